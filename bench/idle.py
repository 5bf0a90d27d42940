"""The idle stop's cost, and waking a project with a message.

1. The sweep with 1,000 active projects, none of them idle yet (its steady state): the
   console's CPU time per sweep and its MongoDB commands per sweep (counted by a PyMongo
   command listener), beside a baseline in the same run that checks each project on its own
   (one read per project, what a timer per project amounts to).
2. "Start and send": the time from `POST …/messages` with `"activate": true` on an inactive
   project to the agent's first token, beside a plain activation followed by the message
   (two requests, the second sent when the first answers), against the simulated cluster.

Run: `uv run python bench/idle.py [--projects 1000] [--sweeps 20] [--wakes 5]`. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from common import console, database
from pymongo import AsyncMongoClient, monitoring

from gooseui.devcluster import Delays, SimClusterThread
from gooseui.idle import IdleSweeper
from gooseui.store import ProjectStore, now


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class NoChat:
    """The sweep's view of replies: none open (none is, in this bench)."""

    def replying(self, user_id: str, project_id: str) -> bool:
        return False


class NoLifecycle:
    def running(self, user_id: str, project_id: str) -> bool:
        return False


async def sweep_cost(uri: str, projects: int, sweeps: int) -> dict[str, dict[str, float]]:
    commands = Commands()
    client: AsyncMongoClient = AsyncMongoClient(uri, event_listeners=[commands], tz_aware=True)
    store = ProjectStore(client, "bench_idle", "projects")
    await store.ensure_indexes()
    moment = now()
    docs = [
        {
            "user_id": f"u{i % 100}",
            "project_id": f"p{i:07d}",
            "name": f"P {i}",
            "name_key": f"p {i}",
            "status": "active",
            "endpoint": "http://127.0.0.1:9/unused",
            "keep_running": False,
            "created_at": moment,
            "updated_at": moment,
            "last_activated_at": moment,
            "last_activity_at": moment - timedelta(minutes=5),
        }
        for i in range(projects)
    ]
    await store._collection.insert_many(docs)
    sweeper = IdleSweeper(60.0, store, NoLifecycle(), NoChat(), None)  # type: ignore[arg-type]

    async def measured(work) -> dict[str, float]:
        await work()  # warm
        before_cpu, before_commands = time.process_time(), commands.count
        started = time.perf_counter()
        for _ in range(sweeps):
            await work()
        wall = time.perf_counter() - started
        return {
            "cpu_ms": (time.process_time() - before_cpu) * 1000 / sweeps,
            "wall_ms": wall * 1000 / sweeps,
            "commands": (commands.count - before_commands) / sweeps,
        }

    async def one_sweep() -> None:
        stopped = await sweeper.sweep()
        assert stopped == []

    async def per_project() -> None:
        cutoff = now() - timedelta(minutes=60)
        for doc in docs:
            current = await store.get(doc["user_id"], doc["project_id"])
            assert current is not None and current["last_activity_at"] >= cutoff

    result = {"sweep": await measured(one_sweep), "per project": await measured(per_project)}
    await client.close()
    return result


async def first_token(http: httpx.AsyncClient, path: str, body: dict) -> float:
    started = time.perf_counter()
    async with http.stream("POST", f"{path}/messages", json=body) as response:
        assert response.status_code == 200, await response.aread()
        buffer = b""
        async for chunk in response.aiter_raw():
            buffer += chunk
            for block in buffer.split(b"\n\n")[:-1]:
                if block.startswith(b"data:"):
                    payload = json.loads(block[5:])
                    if payload["type"] == "message":
                        return time.perf_counter() - started
                    if payload["type"] == "error":
                        raise SystemExit(f"the reply failed: {payload}")
    raise SystemExit("the reply ended without a token")


async def wakes(base: str, count: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"start and send": [], "activate, then send": []}
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        for i in range(count):
            for label in times:
                created = await http.post("/users/alice/projects", json={"name": f"{label} {i}"})
                path = f"/users/alice/projects/{created.json()['project_id']}"
                started = time.perf_counter()
                if label == "start and send":
                    await first_token(http, path, {"message": "hello", "activate": True})
                else:
                    assert (await http.post(f"{path}/activate")).status_code == 200
                    await first_token(http, path, {"message": "hello"})
                times[label].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--wakes", type=int, default=5)
    args = parser.parse_args()
    with database() as uri:
        cost = asyncio.run(sweep_cost(uri, args.projects, args.sweeps))
    with tempfile.TemporaryDirectory(prefix="gooseui-bench-") as tmp:
        delays = Delays(schedule=0.05, pull=0.2, start=0.1, ready=0.1)
        with (
            SimClusterThread(Path(tmp) / "sim", delays=delays) as sim,
            console(Path(tmp) / "console", KUBECONFIG=str(sim.kubeconfig_path)) as base,
        ):
            times = asyncio.run(wakes(base, args.wakes))
    print(
        f"1. one idle sweep over {args.projects} active projects (none idle), mean of {args.sweeps}"
    )
    print(f"{'':<26}{'CPU ms':>10}{'wall ms':>10}{'MongoDB commands':>18}")
    for label, row in cost.items():
        print(f"{label:<26}{row['cpu_ms']:>10.2f}{row['wall_ms']:>10.2f}{row['commands']:>18.1f}")
    ratio = cost["per project"]["cpu_ms"] / max(cost["sweep"]["cpu_ms"], 1e-9)
    print(f"the sweep costs 1/{ratio:.0f} of the CPU of a check per project")
    print(f"2. to the agent's first token, median of {args.wakes} (simulated cluster)")
    for label, values in times.items():
        print(f"{label:<26}{statistics.median(values):>10.2f} s")


if __name__ == "__main__":
    main()
