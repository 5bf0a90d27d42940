"""Several console processes against one MongoDB and one simulated cluster.

Each replica is `python -m gooseui` with its own port and data directory; they share the
test's database and cluster. What one does, the others see; work one starts and cannot
finish (it was killed), another takes over once its lease lapses.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client as k8s

from gooseui.devcluster import SimClusterThread

from .conftest import Replica, console_replica, console_settings

FAST = {"GOOSEUI_RECONCILE_INTERVAL": "0.5"}


@asynccontextmanager
async def replica_pair(directory: Path, env: dict[str, str]) -> AsyncIterator[list[Replica]]:
    async with (
        console_replica(directory / "a", **env) as a,
        console_replica(directory / "b", **env) as b,
    ):
        # each knows the other (a heartbeat a second), so each writes its events out
        for url in (a.url, b.url):
            async with httpx.AsyncClient(base_url=url) as http:
                for _ in range(100):
                    checks = (await http.get("/readyz")).json()["checks"]
                    if len(checks["mongodb"].get("replicas", [])) == 2:
                        break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"{url} does not see the other replica: {checks}")
        yield [a, b]


@pytest.fixture(scope="module")
async def replicas(
    tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, sim_cluster: SimClusterThread
) -> AsyncIterator[list[Replica]]:
    """Two replicas shared by this module's tests (each test makes its own projects)."""
    directory = tmp_path_factory.mktemp("replicas")
    async with replica_pair(
        directory, console_settings(directory, mongo_uri, sim_cluster) | FAST
    ) as pair:
        yield pair


@pytest.fixture
async def doomed_replicas(
    console_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[list[Replica]]:
    """Two replicas of this test alone: it kills one."""
    async with replica_pair(tmp_path, console_env | FAST) as pair:
        yield pair


async def create(url: str, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/users/alice/projects", json={"name": name})
        assert response.status_code == 201, response.text
        return response.json()


def path(project: dict[str, Any], action: str = "") -> str:
    tail = f"/{action}" if action else ""
    return f"/users/{project['user_id']}/projects/{project['project_id']}{tail}"


async def wait_for(url: str, project: dict[str, Any], statuses: set[str], seconds: float) -> dict:
    async with httpx.AsyncClient(base_url=url) as http:
        deadline = time.monotonic() + seconds
        while True:
            stored = (await http.get(path(project))).json()
            if stored["status"] in statuses or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.1)


async def test_a_project_and_its_progress_reach_every_replica(replicas: list[Replica]) -> None:
    a, b = replicas
    project = await create(a.url, "Shared")
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as http:
        listed = (await http.get("/users/alice/projects")).json()
        assert project["project_id"] in [p["project_id"] for p in listed]
        seen: list[tuple[float, dict]] = []

        async def follow() -> None:
            async with http.stream("GET", path(project, "events")) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        seen.append((time.monotonic(), json.loads(line[5:])))
                        if seen[-1][1]["status"] in ("active", "failed"):
                            return

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.5)  # subscribed on b
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as on_a:
            started = time.monotonic()
            response = await on_a.post(path(project, "activate"))
            finished = time.monotonic()
        assert response.status_code == 200, response.text
        await asyncio.wait_for(follower, 10)
    steps = [event["step"] for _, event in seen]
    assert steps[0] == "current" and "apply" in steps and steps[-1] == "ready", steps
    # a's progress reached b's /events while it happened, not afterwards
    progress = [at for at, event in seen if event["step"] not in ("current",)]
    assert progress[0] - started < 1.0 and seen[-1][0] - finished < 1.0


async def test_concurrent_activations_from_two_replicas_are_one(
    replicas: list[Replica], kube: k8s.ApiClient
) -> None:
    a, b = replicas
    project = await create(a.url, "Once")
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=60) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=60) as on_b,
    ):
        answers = await asyncio.gather(
            on_a.post(path(project, "activate")), on_b.post(path(project, "activate"))
        )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 409], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 409)
    assert refused.json()["code"] == "InTransition"
    apps = k8s.AppsV1Api(kube)
    deployment = await apps.read_namespaced_deployment(project["deployment"], project["namespace"])
    assert deployment.spec.replicas == 1
    assert (await wait_for(b.url, project, {"active"}, 5))["status"] == "active"


async def test_a_replica_killed_mid_activation_is_taken_over(
    doomed_replicas: list[Replica], sim: SimClusterThread
) -> None:
    a, b = doomed_replicas
    project = await create(a.url, "Orphaned")
    sim.set_slow_readiness(3.0)
    async with httpx.AsyncClient(base_url=a.url) as on_a:
        response = await on_a.post(path(project, "activate"), params={"wait": "false"})
        assert response.status_code == 202
    await asyncio.sleep(0.5)
    os.kill(a.process.pid, signal.SIGKILL)
    await a.process.wait()
    killed = time.monotonic()
    sim.set_slow_readiness(0.0)
    stored = await wait_for(b.url, project, {"active", "failed"}, 30)
    assert stored["status"] == "active", stored
    # within the lease (10 s), a pass (0.5 s here) and the activation itself
    assert time.monotonic() - killed < 20


async def test_one_reply_per_conversation_across_replicas(
    replicas: list[Replica], sim: SimClusterThread
) -> None:
    a, b = replicas
    project = await create(a.url, "Talk")
    sim.set_agent(delta_delay=0.2)
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=60) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=60) as on_b,
    ):
        assert (await on_a.post(path(project, "activate"))).status_code == 200
        async with on_a.stream(
            "POST", path(project, "messages"), json={"message": "a long one"}
        ) as first:
            assert first.status_code == 200
            lines = first.aiter_lines()
            await anext(lines)  # the session event: the reply is running on a
            second = await on_b.post(path(project, "messages"), json={"message": "me too"})
            assert second.status_code == 409 and second.json()["code"] == "ReplyRunning"
            async for _ in lines:
                pass
        after = await on_b.post(path(project, "messages"), json={"message": "now"})
        assert after.status_code == 200
