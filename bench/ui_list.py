"""A user's project list with 500 projects, open in a real browser (headless chromium).

For the console as it is (the user's page `/ui/users/alice`: search, filter, sort, 25 rows a
page) and for a baseline in the same run (commit 8121cf5, the previous UI: the page `/`
renders every project as a card), each on a simulated cluster of its own, this prints
- the time from `driver.get` until the page is usable: the current page's count reads
  "500 projects" and its first row's name link is visible; the baseline's 500th card's name
  is in the DOM (the page was opened once before the projects existed, so the browser has
  its scripts cached and the console has made its first page: what is counted is the list);
- the console's event-loop lag while that page renders (p99 and worst stall, from the
  console's `/debug/loop-lag`, reset just before the page is opened);
- the lag while 50 of the projects (the newest, half of them on the current page's first
  page) change status at once: 50 activations with `wait=false` posted together, until all
  50 are `active` over REST (polled every 0.2 s), plus one second for the page to catch up;
  and how long it took until all 50 were active.
Targets: a usable page in under 1 s, no stall over 50 ms.

The baseline runs from a git worktree with its own virtualenv (made, and kept, under the
system's temporary directory, as bench/scale.py does).

Run: `uv run python bench/ui_list.py [--projects 500] [--changes 50]`. Needs chromium and
chromium-driver. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from common import browser, console_process
from scale import baseline_python
from selenium import webdriver

from gooseui.devcluster import Delays, SimClusterThread

USER = "alice"
PROJECTS = f"/users/{USER}/projects"
EMPTY = "No projects yet: create one above."  # both sides' list without projects
TARGET_SECONDS = 1.0
TARGET_STALL_MS = 50.0

# one round trip per poll: an XPath's first match, and whether it is rendered visibly
_VISIBLE = """
const find = (path) => document.evaluate(
    path, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
const shown = (e) => {
    if (!e) return false;
    const box = e.getBoundingClientRect(), style = getComputedStyle(e);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden';
};
return arguments[0].every((path) => shown(find(path)));
"""
_PRESENT = """
return document.evaluate(arguments[0], document, null,
    XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue !== null;
"""


def until(condition: Callable[[], bool], what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def text_is(text: str) -> str:
    return f"//*[normalize-space(text())='{text}']"


async def create(base: str, count: int) -> list[dict[str, Any]]:
    """`count` projects for the user; all of them as the REST list gives them (newest first)."""
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:

        async def one(i: int) -> None:
            async with gate:
                response = await http.post(PROJECTS, json={"name": f"list-{i:04d}"})
                assert response.status_code == 201, response.text

        await asyncio.gather(*(one(i) for i in range(count)))
        projects = (await http.get(PROJECTS)).json()
    assert len(projects) == count, f"{len(projects)} projects listed, {count} created"
    return projects


async def change(base: str, pids: list[str]) -> dict[str, Any]:
    """Activate `pids` at once (`wait=false`); wait until all are active, then 1 s more."""
    limits = httpx.Limits(max_connections=len(pids) + 10)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        await http.get("/debug/loop-lag", params={"reset": "true"})
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(http.post(f"{PROJECTS}/{pid}/activate", params={"wait": "false"}) for pid in pids)
        )
        failed = [f"{a.status_code} {a.text[:200]}" for a in answers if a.status_code >= 300]
        wanted = set(pids)
        deadline = started + 300
        while True:
            listed = (await http.get(PROJECTS)).json()
            status = {p["project_id"]: p["status"] for p in listed if p["project_id"] in wanted}
            if all(s == "active" for s in status.values()) and len(status) == len(wanted):
                break
            if time.perf_counter() > deadline or "failed" in status.values():
                bad = {pid: s for pid, s in status.items() if s != "active"}
                raise SystemExit(f"not all {len(pids)} became active: {bad}")
            await asyncio.sleep(0.2)  # listing 500 projects is work for the console too
        active = time.perf_counter() - started
        await asyncio.sleep(1.0)  # the page catches up
        lag = (await http.get("/debug/loop-lag")).json()
    return {"active": active, "lag": lag, "failed": failed}


def run_side(
    label: str,
    python: Path,
    data: Path,
    driver: webdriver.Chrome,
    args: argparse.Namespace,
) -> dict[str, Any]:
    log = data / f"{label}.log"
    delays = Delays(schedule=0.01, pull=0.01, start=0.01, ready=0.01)
    with SimClusterThread(data / f"sim-{label}", delays=delays) as sim:
        try:
            with console_process(
                data / label,
                log=log,
                python=str(python),
                cwd=python.parent.parent.parent,
                KUBECONFIG=str(sim.kubeconfig_path),
            ) as (base, _):
                try:
                    return measure(label, base, driver, args)
                finally:
                    driver.get("about:blank")  # the page's connection closes before the console
        except SystemExit as exc:
            if exc.code != "the console did not become ready":
                raise
            tail = log.read_text().splitlines()[-15:] if log.exists() else []
            raise SystemExit(f"the {label} console did not start:\n" + "\n".join(tail)) from None


def measure(
    label: str, base: str, driver: webdriver.Chrome, args: argparse.Namespace
) -> dict[str, Any]:
    page = f"{base}/ui/users/{USER}" if label == "current" else f"{base}/"
    # once before the projects exist: the browser caches the page's scripts and the console
    # makes its first page, so neither is counted; then the tab is left, and its client
    # deleted (NiceGUI's reconnect timeout, 3 s), before anything happens to the projects
    driver.get(page)
    until(lambda: driver.execute_script(_PRESENT, text_is(EMPTY)), f"the empty {label} page")
    driver.get("about:blank")
    time.sleep(4.0)
    projects = asyncio.run(create(base, args.projects))
    if label == "current":
        first_link = f"(//a[starts-with(@href, '/ui/users/{USER}/projects/')])[1]"
        paths = [text_is(f"{args.projects} projects"), first_link]

        def usable() -> bool:
            return bool(driver.execute_script(_VISIBLE, paths))
    else:
        last = text_is(projects[-1]["name"])  # newest first: the last card's name

        def usable() -> bool:
            return bool(driver.execute_script(_PRESENT, last))

    time.sleep(1.0)  # the creations' writes and events settle
    httpx.get(f"{base}/debug/loop-lag", params={"reset": "true"})
    started = time.perf_counter()
    driver.get(page)
    until(usable, f"the {label} page to show {args.projects} projects")
    shown = time.perf_counter() - started
    render = httpx.get(f"{base}/debug/loop-lag").json()
    # the newest, as the current page orders them: its first page and then some
    newest = sorted(projects, key=lambda p: (p["created_at"], p["project_id"]), reverse=True)
    changed = asyncio.run(change(base, [p["project_id"] for p in newest[: args.changes]]))
    return {"shown": shown, "render": render, **changed}


def report(sides: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    new, old = sides["current"], sides["baseline"]
    print(
        f"{args.projects} projects of one user in chromium (1400x1000); "
        f"{args.changes} of them change status at once; baseline {args.baseline}; "
        "ratio: current / baseline (of the worst stall)"
    )
    print(f"{'':<48}{'current':>16}{'baseline':>16}{'ratio':>8}")

    def row(label: str, a: Any, b: Any, ratio: tuple[float, float] | None) -> None:
        shown = f"{ratio[0] / ratio[1]:.2f}x" if ratio and ratio[1] else ""
        print(f"{label:<48}{a:>16}{b:>16}{shown:>8}")

    def stall(lag: dict[str, Any]) -> str:
        return f"{lag['p99_ms']:.1f} / {lag['max_ms']:.1f}"

    row("time to usable page (s)", f"{new['shown']:.2f}", f"{old['shown']:.2f}",
        (new["shown"], old["shown"]))  # fmt: skip
    for key, label in (("render", "rendering"), ("lag", f"{args.changes} status changes")):
        a, b = new[key], old[key]
        row(f"stall p99 / worst while {label} (ms)", stall(a), stall(b),
            (a["max_ms"], b["max_ms"]))  # fmt: skip
    row(f"time until {args.changes} active (s)", f"{new['active']:.2f}", f"{old['active']:.2f}",
        (new["active"], old["active"]))  # fmt: skip
    for label, side in sides.items():
        if side["failed"]:
            print(f"  {label}: {len(side['failed'])} activations refused, e.g. {side['failed'][0]}")
    worst = max(new["render"]["max_ms"], new["lag"]["max_ms"])
    meets = new["shown"] < TARGET_SECONDS and worst <= TARGET_STALL_MS
    print(
        f"targets: usable page under {TARGET_SECONDS:g} s, no stall over {TARGET_STALL_MS:g} ms; "
        f"current: {new['shown']:.2f} s, worst stall {worst:.1f} ms: "
        f"{'meets them' if meets else 'does not meet them'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--changes", type=int, default=50, help="status changes at once")
    parser.add_argument("--baseline", default="8121cf5", help="the revision to compare with")
    parser.add_argument("--data", type=Path, help="keep the consoles' logs and data here")
    args = parser.parse_args()
    if shutil.which("chromedriver") is None:
        raise SystemExit("chromium-driver is not installed (apt-get install chromium-driver)")
    pythons = {"current": Path(sys.executable), "baseline": baseline_python(args.baseline)}
    sides: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="gooseui-ui-list-") as tmp:
        data = args.data or Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        driver = browser()
        try:
            for label, python in pythons.items():
                sides[label] = run_side(label, python, data, driver, args)
        finally:
            driver.quit()
    report(sides, args)


if __name__ == "__main__":
    main()
