"""Activation overhead: the console's watch-driven activation against a 3-second poller.

Runs N activations with the simulator's pod delays adding up to D seconds and prints the
time each took beyond D (p50, p95), for
- the console (`gooseui` in its own process, REST `POST …/activate`, which applies the
  objects, watches the Deployment and its pods, and checks the agent's health), and
- a baseline measured in the same run against the same simulated cluster: apply the same
  Deployment, then poll it every 3 s until it is ready (what the peer implementation does).

Run: `uv run python bench/activation.py [--n 10] [--delay 1.0]`. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from common import agent_env, console, database, pct
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from gooseui.cluster import manifests
from gooseui.config import load_settings
from gooseui.devcluster import Delays, SimClusterThread

POLL_SECONDS = 3.0


def step_times(log: Path) -> dict[str, list[float]]:
    """Seconds each activation step took, from the console's `project.event` log lines."""
    by_project: dict[str, list[tuple[datetime, str, str]]] = {}
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "project.event" and record.get("status") == "activating":
            at = datetime.fromisoformat(record["time"])
            by_project.setdefault(record["project_id"], []).append(
                (at, record["step"], record.get("status", ""))
            )
    steps: dict[str, list[float]] = {}
    for events in by_project.values():
        for (at, step, _), (after, _, _) in itertools.pairwise(events):
            steps.setdefault(step, []).append((after - at).total_seconds())
    return steps


def console_overheads(
    sim: SimClusterThread, n: int, delay: float, data: Path, mongo_uri: str
) -> list[float]:
    overheads = []
    data.mkdir(parents=True, exist_ok=True)
    with (
        console(
            data / "console",
            log=data / "console.log",
            KUBECONFIG=str(sim.kubeconfig_path),
            NAMESPACE_PREFIX="bench-",
            MONGO_URI=mongo_uri,
            GOOSEUI_GOOSE_ENV_FILE=str(agent_env(data / "agent.env", mongo_uri)),
        ) as base,
        httpx.Client(base_url=base, timeout=60) as http,
    ):
        for i in range(n):
            project = http.post("/users/alice/projects", json={"name": f"bench {i}"}).json()
            path = f"/users/alice/projects/{project['project_id']}"
            started = time.perf_counter()
            response = http.post(f"{path}/activate")
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.text
            overheads.append(elapsed - delay)
            assert http.post(f"{path}/deactivate").status_code == 200
    return overheads


async def polling_overheads(
    sim: SimClusterThread, n: int, delay: float, mongo_uri: str
) -> list[float]:
    settings = load_settings(namespace_prefix="poll-")
    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(
        config_file=str(sim.kubeconfig_path), client_configuration=configuration
    )
    overheads = []
    async with k8s.ApiClient(configuration) as api:
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        await core.create_namespace({"metadata": {"name": "poll-alice"}})
        values = {"MONGODB_URL": mongo_uri, "GOOSE_PROVIDER": "simulated", "GOOSE_MODEL": "sim"}
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        (secret,) = manifests.render_agent(settings, "alice", encoded, "bench")
        await core.create_namespaced_secret("poll-alice", secret)
        for i in range(n):
            pid = f"poll{i:04d}"
            objects = manifests.render_project(settings, "alice", pid, 1)
            started = time.perf_counter()
            await apps.create_namespaced_deployment("poll-alice", objects[0])
            while True:
                await asyncio.sleep(POLL_SECONDS)
                current = await apps.read_namespaced_deployment(
                    objects[0]["metadata"]["name"], "poll-alice"
                )
                if (current.status.ready_replicas or 0) >= 1:
                    break
            overheads.append(time.perf_counter() - started - delay)
            await apps.delete_namespaced_deployment(objects[0]["metadata"]["name"], "poll-alice")
    return overheads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="activations per side")
    parser.add_argument("--delay", type=float, default=1.0, help="D: the pod's start-up time")
    args = parser.parse_args()
    delays = Delays(
        schedule=0.05 * args.delay,
        pull=0.5 * args.delay,
        start=0.05 * args.delay,
        ready=0.4 * args.delay,
    )
    with tempfile.TemporaryDirectory(prefix="gooseui-bench-") as tmp:
        with database() as uri, SimClusterThread(Path(tmp) / "sim", delays=delays) as sim:
            console = console_overheads(sim, args.n, args.delay, Path(tmp), uri)
            steps = step_times(Path(tmp) / "console.log")
            polling = asyncio.run(polling_overheads(sim, args.n, args.delay, uri))
    print(f"activation overhead beyond D = {args.delay:g} s, {args.n} activations each")
    print(f"{'':<34}{'p50 (ms)':>10}{'p95 (ms)':>10}{'mean (ms)':>11}")
    for label, values in (
        ("console (watch + health check)", console),
        (f"baseline ({POLL_SECONDS:g} s polling)", polling),
    ):
        print(
            f"{label:<34}{pct(values, 0.5) * 1000:>10.0f}{pct(values, 0.95) * 1000:>10.0f}"
            f"{statistics.mean(values) * 1000:>11.0f}"
        )
    print(
        "console steps (p50 ms): "
        + ", ".join(f"{step} {pct(values, 0.5) * 1000:.1f}" for step, values in steps.items())
    )
    ratio = pct(polling, 0.5) / max(pct(console, 0.5), 1e-3)
    print(
        f"console p50 overhead is {ratio:.0f}x lower than the polling baseline "
        f"(target: console p50 <= 200 ms)"
    )


if __name__ == "__main__":
    main()
