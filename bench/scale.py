"""Many projects, many activations at once: the console beside the code it replaced.

1,000 projects over 100 users on one simulated cluster; 200 of them (two per user) are
activated at once, then deactivated at once. For each side this prints
- each activation's overhead beyond the pod's start-up time D (p50, p95), and each
  deactivation's time;
- Kubernetes API requests per activation and per deactivation, counted by the simulated API
  server (its audit: every resource request, whatever the answer);
- the watches open at the peak of the activations, and once idle;
- the console's CPU time and resident memory, and its event loop's lag (p99, max);
for the console as it is, and for a baseline: the code at the start of issue 11 (commit
f5e8ca0: a list+watch per activation), run from a git worktree with its own virtualenv,
against the same simulator in the same run. Both consoles keep their records in one
in-memory MongoDB-compatible server (SecantusDB), each in a database of its own, and their
agents in another. The baseline's worktree is made (and kept) under
the system's temporary directory.

Run: `uv run python bench/scale.py [--users 100] [--projects 1000] [--at-once 200]
[--delay 0.45] [--baseline f5e8ca0]`. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import agent_env, console_process, database, pct

from gooseui.devcluster import kubeconfig

REPOSITORY = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


class Simulator:
    """The simulated cluster in a process of its own, as an API server is: it does not
    share this process's interpreter lock with the load it serves."""

    def __init__(self, data: Path, delay: float) -> None:
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_path = data / "simulated-kubeconfig.yaml"
        shares = {"SCHEDULE": 0.05, "PULL": 0.5, "START": 0.05, "READY": 0.4}
        env = {
            **os.environ,
            **{f"GOOSEUI_SIM_DELAY_{k}": str(v * delay) for k, v in shares.items()},
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gooseui.devcluster", "--data-dir", str(data),
             "--log-level", "WARNING"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=(data / "sim.log").open("wb"),
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "Simulated cluster: …" once it serves
        server, token, ca = kubeconfig.read(self.kubeconfig_path)
        context = ssl.create_default_context(cadata=ca.decode()) if ca else True
        self.http = httpx.Client(
            base_url=f"{server}/sim/v1/",
            headers={"Authorization": f"Bearer {token}"},
            verify=context,
            timeout=30,
        )

    def audit(self, reset: bool = False) -> dict[str, Any]:
        response = self.http.post("audit/reset") if reset else self.http.get("audit")
        return response.json()["audit"]

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(30)


def baseline_python(revision: str) -> Path:
    """The Python of a worktree at `revision` with its dependencies installed."""
    tree = Path(tempfile.gettempdir()) / f"gooseui-baseline-{revision}"
    if not tree.exists():
        subprocess.run(
            ["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(tree), revision],
            check=True,
            capture_output=True,
        )
    lock = REPOSITORY / "uv.lock"
    if lock.exists():
        shutil.copy(lock, tree / "uv.lock")
    subprocess.run(["uv", "sync", "--frozen", "--quiet"], cwd=tree, check=True, env=_uv_env())
    return tree / ".venv" / "bin" / "python"


def _uv_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _all(
    http: httpx.AsyncClient, paths: list[str], action: str
) -> tuple[list[float], list[str]]:
    """POST `action` to every path at once; the seconds each took, and any failures."""

    async def one(path: str) -> tuple[float, str | None]:
        started = time.perf_counter()
        response = await http.post(f"{path}/{action}")
        took = time.perf_counter() - started
        ok = response.status_code == 200
        return took, None if ok else f"{path}: {response.status_code} {response.text[:200]}"

    results = await asyncio.gather(*(one(p) for p in paths))
    return [t for t, _ in results], [e for _, e in results if e]


async def _create(http: httpx.AsyncClient, users: list[str], per_user: int) -> list[list[str]]:
    gate = asyncio.Semaphore(16)

    async def one(user: str, i: int) -> str:
        async with gate:
            response = await http.post(f"/users/{user}/projects", json={"name": f"p{i}"})
            assert response.status_code == 201, response.text
            return f"/users/{user}/projects/{response.json()['project_id']}"

    return [list(await asyncio.gather(*(one(user, i) for i in range(per_user)))) for user in users]


async def _side(
    base: str, pid: int, sim: Simulator, users: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.at_once + 20)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:
        projects = await _create(http, users, args.projects // len(users))
    per_user = max(1, args.at_once // len(users))
    chosen = [path for paths in projects for path in paths[:per_user]][: args.at_once]
    results: dict[str, Any] = {}
    for action in ("activate", "deactivate"):
        # fresh connections for each phase: one the server closed while idle (keep-alive)
        # must not fail a request
        async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:
            await asyncio.sleep(1.0)  # the creations' writes settle
            sim.audit(reset=True)
            await http.get("/debug/loop-lag", params={"reset": "true"})
            cpu = cpu_seconds(pid)
            took, failed = await _all(http, chosen, action)
            lag = (await http.get("/debug/loop-lag")).json()
            audit = sim.audit()
            results[action] = {
                "took": took,
                "failed": failed,
                "requests": audit["total"] / len(chosen),
                "watches_peak": audit["watches_peak"],
                "cpu": cpu_seconds(pid) - cpu,
                "lag_p99": lag.get("p99_ms"),
                "lag_max": lag.get("max_ms"),
                "calls": audit["calls"],
            }
            await asyncio.sleep(2.0)
            results[action]["watches_idle"] = sim.audit()["watches_open"]
    results["rss_peak"] = memory_mb(pid, "VmHWM")
    return results


def run_side(
    label: str,
    python: Path,
    sim: Simulator,
    data: Path,
    agents: str,
    consoles: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    users = [f"{label[0]}{i:03d}" for i in range(args.users)]
    log = data / f"{label}.log"
    try:
        with console_process(
            data / label,
            log=log,
            python=str(python),
            cwd=python.parent.parent.parent,
            KUBECONFIG=str(sim.kubeconfig_path),
            NAMESPACE_PREFIX=f"{label}-",
            GOOSEUI_USERS=",".join(f"{u}:User {u}" for u in users),
            GOOSEUI_GOOSE_ENV_FILE=str(agent_env(data / f"{label}.env", agents)),
            MONGO_URI=consoles,
            MONGO_DB=f"scale_{label}",
        ) as (base, process):
            return asyncio.run(_side(base, process.pid, sim, users, args))
    except SystemExit:  # it did not start: say why
        tail = log.read_text().splitlines()[-15:] if log.exists() else []
        raise SystemExit(f"the {label} console did not start:\n" + "\n".join(tail)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--projects", type=int, default=1000, help="in all, spread over users")
    parser.add_argument("--at-once", type=int, default=200, help="activations started together")
    parser.add_argument("--delay", type=float, default=0.45, help="D: the pod's start-up time")
    parser.add_argument("--baseline", default="f5e8ca0", help="the revision to compare with")
    parser.add_argument("--data", type=Path, help="keep the consoles' logs and data here")
    parser.add_argument("--only", choices=["console", "baseline"], help="run one side")
    args = parser.parse_args()
    pythons = {"console": Path(sys.executable)}
    if args.only != "console":
        pythons["baseline"] = baseline_python(args.baseline)
    if args.only == "baseline":
        del pythons["console"]
    sides: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="gooseui-scale-") as tmp:
        data = args.data or Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        sim = Simulator(data / "sim", args.delay)
        try:
            with database() as agents, database() as consoles:
                for label, python in pythons.items():
                    sides[label] = run_side(label, python, sim, data, agents, consoles, args)
        finally:
            sim.stop()
    report(sides, args)


def report(sides: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    new = sides.get("console") or sides["baseline"]
    old = sides.get("baseline") or new
    print(
        f"{args.projects} projects over {args.users} users; {args.at_once} activations at once, "
        f"then {args.at_once} deactivations; pod start-up D = {args.delay:g} s"
    )
    print(f"{'':<44}{'console':>12}{'baseline':>12}{'ratio':>8}")

    def row(label: str, a: float | None, b: float | None, fmt: str = ".0f") -> None:
        ratio = f"{a / b:.2f}x" if a is not None and b else ""
        shown = [format(v, fmt) if v is not None else "-" for v in (a, b)]
        print(f"{label:<44}{shown[0]:>12}{shown[1]:>12}{ratio:>8}")

    for action, noun in (("activate", "activation"), ("deactivate", "deactivation")):
        a, b = new[action], old[action]
        beyond = args.delay if action == "activate" else 0.0
        for q in (0.5, 0.95):
            row(
                f"{noun} {'overhead beyond D' if beyond else 'time'} p{round(q * 100)} (ms)",
                (pct(a["took"], q) - beyond) * 1000,
                (pct(b["took"], q) - beyond) * 1000,
            )
        row(f"API requests per {noun}", a["requests"], b["requests"], ".2f")
        row(f"watches open, peak during the {noun}s", a["watches_peak"], b["watches_peak"])
        row(f"watches open, idle after the {noun}s", a["watches_idle"], b["watches_idle"])
        row(f"console CPU during the {noun}s (s)", a["cpu"], b["cpu"], ".1f")
        row(f"event-loop lag p99 during the {noun}s (ms)", a["lag_p99"], b["lag_p99"], ".1f")
        row(f"event-loop lag max during the {noun}s (ms)", a["lag_max"], b["lag_max"], ".1f")
        for side, result in (("console", a), ("baseline", b)):
            if result["failed"]:
                print(f"  {side}: {len(result['failed'])} failed, e.g. {result['failed'][0]}")
    row("console RSS, peak (MB)", new["rss_peak"], old["rss_peak"])
    print("\nthe console's API requests during the activations, by verb and resource:")
    for call in sorted(new["activate"]["calls"], key=lambda c: -c["count"]):
        scope = "cluster-wide" if call["cluster_wide"] else "namespaced"
        print(f"  {call['count']:>6}  {call['verb']:<8} {call['resource']:<28} {scope}")


if __name__ == "__main__":
    main()
