"""Benchmark of the simulated cluster (run: `uv run python bench/simcluster.py`).

Prints, in one table:
- requests per second the simulated API server serves to kubernetes-asyncio (GET of one
  Deployment and LIST of a namespace's Deployments, 1 and 16 concurrent clients);
- the time from applying `replicas: 1` to the Deployment reported Ready, minus the
  configured pod delays (schedule + pull + start + ready), for 1 and for 50
  concurrent Deployments (p50 / p95), observed through a watch as the console does;
- SSE events per second of a long agent reply through the service proxy, and of 100
  concurrent replies (each in its own session: create, reply, history in MongoDB);
The agents are as strict as the real image: they need MONGODB_URL, GOOSE_PROVIDER and
GOOSE_MODEL, ping MongoDB before serving and on every health probe, and keep their
sessions there; so the bench runs a throwaway embedded MongoDB (SecantusDB) for them.
Bounded: well under a minute in total.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import database
from httpx_sse import aconnect_sse
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client import ApiClient, Configuration

from gooseui.devcluster import AgentSettings, Delays, SimClusterThread

DELAYS = Delays(schedule=0.05, pull=0.15, start=0.05, ready=0.2)
CONFIGURED = DELAYS.schedule + DELAYS.pull + DELAYS.start + DELAYS.ready
RPS_SECONDS = 1.5
TIMEOUT = (5, 60)
AGENT_ENV: dict[str, str] = {"GOOSE_PROVIDER": "simulated", "GOOSE_MODEL": "simulated-agent"}


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": name, "app.kubernetes.io/managed-by": "gooseui"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "goose-api",
                            "image": "goose-api:latest",
                            "ports": [{"containerPort": 3001, "name": "http"}],
                            "env": [{"name": k, "value": v} for k, v in AGENT_ENV.items()],
                            "readinessProbe": {
                                "httpGet": {"path": "/api/v1/health", "port": "http"}
                            },
                        }
                    ]
                },
            },
        },
    }


async def apply(apps: client.AppsV1Api, ns: str, name: str, replicas: int) -> None:
    await apps.patch_namespaced_deployment(
        name,
        ns,
        deployment(name, replicas),
        field_manager="gooseui",
        force=True,
        _content_type="application/apply-patch+yaml",
        _request_timeout=TIMEOUT,
    )


async def requests_per_second(
    apps: client.AppsV1Api, ns: str, workers: int, listing: bool, models: bool = True
) -> float:
    """Calls per second; `models=False` skips kubernetes-asyncio's model deserialisation
    (`_preload_content=False`), which isolates the simulator's own cost."""
    count = 0
    deadline = time.perf_counter() + RPS_SECONDS

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            if listing:
                result = await apps.list_namespaced_deployment(
                    ns, _request_timeout=TIMEOUT, _preload_content=models
                )
            else:
                result = await apps.read_namespaced_deployment(
                    "bench-rps", ns, _request_timeout=TIMEOUT, _preload_content=models
                )
            if not models:
                await result.read()
                result.release()
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return count / (time.perf_counter() - start)


async def time_to_ready(apps: client.AppsV1Api, ns: str, names: list[str]) -> list[float]:
    """Seconds from each apply(replicas=1) to the watch event showing it Ready, minus delays."""
    for name in names:
        await apply(apps, ns, name, 0)
    listing = await apps.list_namespaced_deployment(ns, _request_timeout=TIMEOUT)
    pending = set(names)
    started: dict[str, float] = {}
    ready_at: dict[str, float] = {}

    async def observe() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(
                apps.list_namespaced_deployment,
                ns,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=60,
                _request_timeout=TIMEOUT,
            ):
                obj = event["raw_object"]
                name = obj["metadata"]["name"]
                status = obj.get("status") or {}
                if name in pending and status.get("readyReplicas") == 1 and name in started:
                    ready_at[name] = time.perf_counter()
                    pending.discard(name)
                    if not pending:
                        return

    observer = asyncio.create_task(observe())
    await asyncio.sleep(0.1)

    async def scale_up(name: str) -> None:
        started[name] = time.perf_counter()
        await apply(apps, ns, name, 1)

    await asyncio.gather(*(scale_up(n) for n in names))
    await asyncio.wait_for(observer, 60)
    return [ready_at[n] - started[n] - CONFIGURED for n in names]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def stream_rate(sim: SimClusterThread, ns: str) -> float:
    sim.set_agent(delta_delay=0.0, reply_deltas=5000, keepalive=5.0)
    base = f"/api/v1/namespaces/{ns}/services/bench-chat:3001/proxy/api/v1"
    context = ssl.create_default_context(cafile=str(sim.ca_path))
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with httpx.AsyncClient(
        base_url=sim.url, verify=context, headers=headers, timeout=60
    ) as http:
        sid = (await http.post(f"{base}/sessions")).json()["session_id"]
        count = 0
        start = time.perf_counter()
        async with aconnect_sse(
            http, "POST", f"{base}/sessions/{sid}/messages", json={"message": "go"}
        ) as source:
            async for _ in source.aiter_sse():
                count += 1
        return count / (time.perf_counter() - start)


async def concurrent_rate(
    sim: SimClusterThread, ns: str, streams: int = 100
) -> tuple[float, float]:
    """(aggregate events/s, seconds) of `streams` replies at once, each in a new session."""
    sim.set_agent(delta_delay=0.0, reply_deltas=200, keepalive=5.0)
    base = f"/api/v1/namespaces/{ns}/services/bench-chat:3001/proxy/api/v1"
    context = ssl.create_default_context(cafile=str(sim.ca_path))
    headers = {"Authorization": f"Bearer {sim.token}"}
    limits = httpx.Limits(max_connections=streams + 10)
    async with httpx.AsyncClient(
        base_url=sim.url, verify=context, headers=headers, timeout=60, limits=limits
    ) as http:

        async def one() -> int:
            sid = (await http.post(f"{base}/sessions")).json()["session_id"]
            count = 0
            async with aconnect_sse(
                http, "POST", f"{base}/sessions/{sid}/messages", json={"message": "go"}
            ) as source:
                async for _ in source.aiter_sse():
                    count += 1
            return count

        start = time.perf_counter()
        counts = await asyncio.gather(*(one() for _ in range(streams)))
        elapsed = time.perf_counter() - start
        return sum(counts) / elapsed, elapsed


async def main(sim: SimClusterThread) -> list[tuple[str, str]]:
    configuration = Configuration()
    await config.load_kube_config(
        config_file=str(sim.kubeconfig_path), client_configuration=configuration
    )
    rows: list[tuple[str, str]] = []
    async with ApiClient(configuration) as api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        for ns in ("bench-rps", "bench-one", "bench-fifty", "bench-chat"):
            await core.create_namespace({"metadata": {"name": ns}}, _request_timeout=TIMEOUT)
        for i in range(20):
            await apply(apps, "bench-rps", f"bench-rps{'' if i == 0 else i}", 0)
        for listing, label in ((False, "GET 1 deployment"), (True, "LIST 20 deployments")):
            for workers in (1, 16):
                models = await requests_per_second(apps, "bench-rps", workers, listing)
                raw = await requests_per_second(apps, "bench-rps", workers, listing, models=False)
                rows.append(
                    (
                        f"{label}, {workers} client(s)",
                        f"{models:,.0f} req/s ({raw:,.0f} without model decoding)",
                    )
                )

        one = await time_to_ready(apps, "bench-one", ["bench-one"])
        rows.append(("replicas 1 -> Ready, 1 deployment", f"+{one[0] * 1000:.0f} ms"))
        fifty = await time_to_ready(apps, "bench-fifty", [f"bench-{i:02d}" for i in range(50)])
        rows.append(
            (
                "replicas 1 -> Ready, 50 concurrent",
                f"p50 +{percentile(fifty, 50) * 1000:.0f} ms, "
                f"p95 +{percentile(fifty, 95) * 1000:.0f} ms",
            )
        )
        service = {
            "metadata": {"name": "bench-chat"},
            "spec": {
                "selector": {"app.kubernetes.io/instance": "bench-chat"},
                "ports": [{"port": 3001}],
            },
        }
        await core.create_namespaced_service("bench-chat", service, _request_timeout=TIMEOUT)
        await time_to_ready(apps, "bench-chat", ["bench-chat"])
        rate = await stream_rate(sim, "bench-chat")
        rows.append(("agent SSE through service proxy", f"{rate:,.0f} events/s"))
        aggregate, seconds = await concurrent_rate(sim, "bench-chat")
        rows.append(
            ("100 concurrent replies (200 deltas)", f"{aggregate:,.0f} events/s in {seconds:.2f} s")
        )
    return rows


def run() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simbench-") as tmp, database() as mongo_uri:
        AGENT_ENV.update(MONGODB_URL=mongo_uri, MONGODB_DATABASE="bench_sessions")
        sim = SimClusterThread(Path(tmp), delays=DELAYS, agent=AgentSettings(delta_delay=0.0))
        sim.start()
        try:
            rows = asyncio.run(asyncio.wait_for(main(sim), 55))
        finally:
            sim.stop()
    width = max(len(label) for label, _ in rows)
    print(f"simulated cluster benchmark (configured pod delays {CONFIGURED * 1000:.0f} ms)")
    print(f"{'measure'.ljust(width)}  result")
    print(f"{'-' * width}  {'-' * 32}")
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    print(f"(total {time.perf_counter() - started:.1f} s; Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(run())
