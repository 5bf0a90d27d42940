"""A 3,000-delta reply streamed into a page open in a real browser (headless chromium).

Prints, for the console as built (Markdown rendered at most ten times a second) and for a
baseline in the same run that renders the Markdown on every delta: the number of renders,
how long the reply took to show completely, and the console's event-loop lag while it
streamed (p99 and worst stall, from the console's `/debug/loop-lag`). Target: no stall over
50 ms with batching.

Run: `uv run python bench/ui_stream.py [--deltas 3000]`. Needs chromium and chromium-driver.
Loopback only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from common import browser, console
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from gooseui.devcluster import AgentSettings, Delays, SimClusterThread


def until(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit("the page never showed the complete reply")


def run_once(
    sim: SimClusterThread, data: Path, deltas: int, interval: str, driver: webdriver.Chrome
) -> dict[str, float]:
    log_path = data / f"console-{interval}.log"
    with console(
        data / f"console-{interval}",
        log=log_path,
        KUBECONFIG=str(sim.kubeconfig_path),
        GOOSEUI_UI_RENDER_INTERVAL=interval,
    ) as base:
        project = httpx.post(f"{base}/users/alice/projects", json={"name": "ui"}).json()
        path = f"/users/alice/projects/{project['project_id']}"
        assert httpx.post(f"{base}{path}/activate", timeout=60).status_code == 200
        # the project's own page, where the chat is
        driver.get(f"{base}/ui/users/alice/projects/{project['project_id']}")
        until(lambda: "Endpoint:" in driver.find_element(By.TAG_NAME, "body").text)
        field = driver.find_element(
            By.XPATH, "//label[.//*[normalize-space(text())='Message']]//textarea"
        )
        until(field.is_displayed)
        httpx.get(f"{base}/debug/loop-lag", params={"reset": "true"})
        started = time.perf_counter()
        field.send_keys("stream a long reply" + Keys.ENTER)
        last = f"w{deltas - 1}"
        until(lambda: last in driver.find_element(By.TAG_NAME, "body").text)
        shown = time.perf_counter() - started
        lag = httpx.get(f"{base}/debug/loop-lag").json()
    renders = None
    for line in log_path.read_text().splitlines():
        if '"ui.reply_rendered"' in line:
            renders = json.loads(line)["renders"]
    return {"renders": renders or 0, "seconds": shown, "p99": lag["p99_ms"], "max": lag["max_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=3000)
    parser.add_argument(
        "--delta-delay", type=float, default=0.002, help="seconds between the agent's deltas"
    )
    args = parser.parse_args()
    if shutil.which("chromedriver") is None:
        raise SystemExit("chromium-driver is not installed (apt-get install chromium-driver)")
    with tempfile.TemporaryDirectory(prefix="gooseui-bench-") as tmp:
        delays = Delays(schedule=0.01, pull=0.01, start=0.01, ready=0.01)
        agent = AgentSettings(delta_delay=args.delta_delay, reply_deltas=args.deltas)
        driver = browser()
        try:
            with SimClusterThread(Path(tmp) / "sim", delays=delays, agent=agent) as sim:
                batched = run_once(sim, Path(tmp), args.deltas, "0.1", driver)
                every = run_once(sim, Path(tmp), args.deltas, "0", driver)
        finally:
            driver.quit()
    print(f"{args.deltas} deltas, {args.delta_delay * 1000:g} ms apart, into a page in chromium")
    print(f"{'':<30}{'renders':>9}{'shown (s)':>11}{'lag p99 (ms)':>14}{'worst (ms)':>12}")
    for label, row in (
        ("batched (<= 10 renders/s)", batched),
        ("baseline: render every delta", every),
    ):
        print(
            f"{label:<30}{row['renders']:>9}{row['seconds']:>11.2f}{row['p99']:>14}{row['max']:>12}"
        )
    print(
        f"worst stall {batched['max']} ms with batching (target <= 50), "
        f"{every['max']} ms when rendering every delta"
    )


if __name__ == "__main__":
    main()
