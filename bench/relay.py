"""The chat relay's cost: the console beside a direct connection to the same simulated pod.

"Direct" is what the console itself connects to: the pod's Goose API through the simulated
API server's service proxy (with the cluster's token and CA). So the ratios below are what
the console's relay adds, nothing else. Printed, in one run:
- time to the first agent event of a reply (p50/p95 over sequential replies);
- events per second of one reply of 5,000 events;
- 100 concurrent replies: aggregate events per second, and the console's event-loop lag
  (p99, read from its `/debug/loop-lag`) while they stream.

Run: `uv run python bench/relay.py [--first N] [--events 5000] [--streams 100]`. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import time
from pathlib import Path

import httpx
from common import console, pct

from gooseui.devcluster import AgentSettings, Delays, SimClusterThread


class Side:
    """One way to ask for a reply: through the console, or straight to the pod."""

    def __init__(self, name: str, client: httpx.AsyncClient, make_session, url_for) -> None:
        self.name = name
        self.client = client
        self.make_session = make_session
        self.url_for = url_for

    async def reply(self, session: str, message: str) -> tuple[float, int, float]:
        """(seconds to the first agent event, agent events, seconds in all)."""
        started = time.perf_counter()
        first = 0.0
        events = 0
        request = self.url_for(session)
        async with self.client.stream("POST", request["url"], json=request["json"]) as response:
            assert response.status_code == 200, await response.aread()
            async for chunk in response.aiter_raw():
                count = chunk.count(b'data: {"type":"')  # agent events (compact JSON)
                if count and not first:
                    first = time.perf_counter() - started
                events += count
        return first, events, time.perf_counter() - started


async def measure(
    side: Side,
    sim: SimClusterThread,
    args: argparse.Namespace,
    lag_client: httpx.AsyncClient | None,
) -> dict[str, float]:
    result: dict[str, float] = {}
    sim.set_agent(delta_delay=0.0, reply_deltas=20, keepalive=5)
    session = await side.make_session()
    firsts = [(await side.reply(session, "first"))[0] for _ in range(args.first)]
    result["first_p50"], result["first_p95"] = pct(firsts, 0.5), pct(firsts, 0.95)

    sim.set_agent(reply_deltas=args.events)
    _, events, seconds = await side.reply(session, "long")
    result["one_rate"] = events / seconds

    async def many(label: str) -> None:
        sessions = [await side.make_session() for _ in range(args.streams)]
        await asyncio.gather(*[side.reply(s, "warm") for s in sessions[:1]])
        if lag_client is not None:
            await lag_client.get("/debug/loop-lag", params={"reset": "true"})
        started = time.perf_counter()
        results = await asyncio.gather(*[side.reply(s, "many") for s in sessions])
        seconds = time.perf_counter() - started
        result[f"{label}_rate"] = sum(r[1] for r in results) / seconds
        if lag_client is not None:
            lag = (await lag_client.get("/debug/loop-lag")).json()
            result[f"{label}_lag_p99"] = lag["p99_ms"]
            result[f"{label}_lag_max"] = lag["max_ms"]

    # as fast as the agents can go: the relay's ceiling (CPU-bound on this machine)
    sim.set_agent(reply_deltas=args.per_stream, delta_delay=0.0)
    await many("many")
    # agents writing at a model's pace (a delta every 30 ms): what an operator's console sees
    sim.set_agent(reply_deltas=args.paced_deltas, delta_delay=0.03)
    await many("paced")
    return result


async def run(sim: SimClusterThread, base: str, args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=args.streams + 10)
    timeout = httpx.Timeout(60)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as console:
        project = (await console.post("/users/alice/projects", json={"name": "relay"})).json()
        path = f"/users/alice/projects/{project['project_id']}"
        project = (await console.post(f"{path}/activate")).json()
        endpoint = project["endpoint"]

        async def console_session() -> str:
            return (await console.post(f"{path}/sessions")).json()["session_id"]

        via_console = Side(
            "console relay",
            console,
            console_session,
            lambda s: {"url": f"{path}/messages", "json": {"message": "bench", "session_id": s}},
        )

        context = ssl.create_default_context(cafile=str(sim.ca_path))
        async with httpx.AsyncClient(
            verify=context,
            timeout=timeout,
            limits=limits,
            headers={"Authorization": f"Bearer {sim.token}"},
        ) as pod:

            async def direct_session() -> str:
                return (await pod.post(f"{endpoint}/api/v1/sessions")).json()["session_id"]

            direct = Side(
                "direct to the pod",
                pod,
                direct_session,
                lambda s: {
                    "url": f"{endpoint}/api/v1/sessions/{s}/messages",
                    "json": {"message": "bench"},
                },
            )
            d = await measure(direct, sim, args, None)
            c = await measure(via_console, sim, args, console)

    print(f"{'':<44}{'console':>12}{'direct':>12}{'ratio':>8}")
    rows = [
        ("first event p50 (ms)", "first_p50", 1000),
        ("first event p95 (ms)", "first_p95", 1000),
        (f"one stream of {args.events} events (ev/s)", "one_rate", 1),
        (f"{args.streams} streams x {args.per_stream}, full speed (ev/s)", "many_rate", 1),
        (f"{args.streams} streams x {args.paced_deltas}, 30 ms pace (ev/s)", "paced_rate", 1),
    ]
    for label, key, scale in rows:
        print(f"{label:<44}{c[key] * scale:>12.1f}{d[key] * scale:>12.1f}{c[key] / d[key]:>8.2f}")
    for label, key in (("full speed", "many"), ("30 ms pace", "paced")):
        print(
            f"{'console loop lag, ' + label + ' (ms)':<44}"
            f"{'p99 ' + str(c[key + '_lag_p99']):>12}{'max ' + str(c[key + '_lag_max']):>12}"
        )
    print(
        f"first-event overhead p50: {(c['first_p50'] - d['first_p50']) * 1000:.1f} ms "
        f"(target <= 5); one-stream rate {c['one_rate'] / d['one_rate']:.2f}x direct "
        f"(target >= 0.8); loop lag p99 at {args.streams} paced streams "
        f"{c['paced_lag_p99']} ms (target <= 25)"
    )
    print(
        "(console, simulator and this load generator share the machine's cores; the "
        "full-speed rows are CPU-bound)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=50, help="replies timed to first event")
    parser.add_argument("--events", type=int, default=5000, help="events of the one long reply")
    parser.add_argument("--streams", type=int, default=100, help="concurrent replies")
    parser.add_argument("--per-stream", type=int, default=500, help="events per full-speed reply")
    parser.add_argument("--paced-deltas", type=int, default=100, help="deltas per paced reply")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gooseui-bench-") as tmp:
        delays = Delays(schedule=0.01, pull=0.01, start=0.01, ready=0.01)
        agent = AgentSettings(delta_delay=0.0)
        with (
            SimClusterThread(Path(tmp) / "sim", delays=delays, agent=agent) as sim,
            console(Path(tmp) / "console", KUBECONFIG=str(sim.kubeconfig_path)) as base,
        ):
            asyncio.run(run(sim, base, args))


if __name__ == "__main__":
    main()
