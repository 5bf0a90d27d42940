"""Environment lifecycle against the simulated cluster, over HTTP, through kubernetes-asyncio."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client as k8s

from gooseui.devcluster import SimClusterThread
from tests.conftest import console, live_console


async def deployment(kube: k8s.ApiClient, project: dict[str, Any]) -> dict[str, Any] | None:
    response = await k8s.AppsV1Api(kube).read_namespaced_deployment(
        project["deployment"], project["namespace"], _preload_content=False
    )
    body = json.loads(await response.read())
    if response.status == 404:
        return None
    assert response.status == 200, body
    return body


async def pods(kube: k8s.ApiClient, project: dict[str, Any]) -> list[dict[str, Any]]:
    response = await k8s.CoreV1Api(kube).list_namespaced_pod(
        project["namespace"],
        label_selector=f"gooseui.io/project-id={project['project_id']}",
        _preload_content=False,
    )
    return json.loads(await response.read())["items"]


async def new_project(client: httpx.AsyncClient, name: str = "Env", user: str = "alice") -> dict:
    response = await client.post(f"/users/{user}/projects", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def settled(client: httpx.AsyncClient, project: dict[str, Any], seconds: float = 30) -> dict:
    """The project once no transition is under way (or as it is after `seconds`)."""
    for _ in range(int(seconds * 20)):
        stored = (await client.get(url(project))).json()
        if stored["status"] not in ("activating", "deactivating", "deleting"):
            return stored
        await asyncio.sleep(0.05)
    return stored


async def until(check: Any, seconds: float = 20) -> Any:
    """`check()`'s first truthy value within `seconds` (or its last value)."""
    for _ in range(int(seconds * 20)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    return await check()


async def replicas_of(kube: k8s.ApiClient, project: dict[str, Any]) -> int | None:
    dep = await deployment(kube, project)
    return dep["spec"]["replicas"] if dep else None


async def fail_keeping_its_pod(
    client: httpx.AsyncClient,
    kube: k8s.ApiClient,
    sim: SimClusterThread,
    project: dict[str, Any],
) -> dict[str, Any]:
    """Activate a project whose activation fails, with its scale-down refused by the API
    server (so its pod stays); the project once it has settled."""
    response = await client.post(url(project, "activate"), params={"wait": "false"})
    assert response.status_code == 202
    await until(lambda: pods(kube, project), 4)
    path = f"/apis/apps/v1/namespaces/{project['namespace']}/deployments"
    sim.fail_requests(path, 500, count=None, method="PATCH")
    return await settled(client, project)


def url(project: dict[str, Any], action: str = "") -> str:
    base = f"/users/{project['user_id']}/projects/{project['project_id']}"
    return f"{base}/{action}" if action else base


async def test_activate_deactivate_delete(
    client: httpx.AsyncClient, kube: k8s.ApiClient, console_env: dict[str, str]
) -> None:
    project = await new_project(client)
    assert await deployment(kube, project) is None  # create makes no cluster call

    response = await client.post(url(project, "activate"))
    assert response.status_code == 200, response.text
    active = response.json()
    assert active["status"] == "active" and active["status_reason"] is None
    assert active["endpoint"].endswith(
        f"/api/v1/namespaces/{project['namespace']}/services/{project['service']}:3001/proxy"
    )
    assert active["last_activated_at"] is not None
    again = await client.post(url(project, "activate"))
    assert again.status_code == 200 and again.json()["updated_at"] == active["updated_at"]

    dep = await deployment(kube, project)
    assert dep is not None and dep["spec"]["replicas"] == 1
    labels = {
        "app.kubernetes.io/name": "goose-api",
        "app.kubernetes.io/instance": f"proj-{project['project_id']}",
        "app.kubernetes.io/managed-by": "gooseui",
        "gooseui.io/user-id": "alice",
        "gooseui.io/project-id": project["project_id"],
    }
    assert labels.items() <= dep["metadata"]["labels"].items()
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod_spec = dep["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["name"] == "goose-api" and container["image"] == "goose-api:latest"
    assert container["ports"][0]["containerPort"] == 3001
    assert container["ports"][0]["name"] == "http"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["USER_ID"] == "alice" and env["PROJECT_ID"] == project["project_id"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] == 1000
    assert pod_spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    namespace = json.loads(
        await (
            await k8s.CoreV1Api(kube).read_namespace(project["namespace"], _preload_content=False)
        ).read()
    )
    for mode in ("enforce", "warn", "audit"):
        assert namespace["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"
    service = json.loads(
        await (
            await k8s.CoreV1Api(kube).read_namespaced_service(
                project["service"], project["namespace"], _preload_content=False
            )
        ).read()
    )
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 3001
    assert [p for p in await pods(kube, project) if p["status"].get("phase") == "Running"]

    stopped = await client.post(url(project, "deactivate"))
    assert stopped.status_code == 200 and stopped.json()["status"] == "inactive"
    assert stopped.json()["endpoint"] is None
    assert (await deployment(kube, project))["spec"]["replicas"] == 0
    assert await pods(kube, project) == []
    assert (await client.post(url(project, "deactivate"))).json()["status"] == "inactive"

    assert (await client.post(url(project, "activate"))).json()["status"] == "active"
    deleted = await client.delete(url(project))
    assert deleted.status_code == 204
    assert await deployment(kube, project) is None
    assert await pods(kube, project) == []
    assert (await client.get(url(project))).status_code == 404
    # the user's last project took the namespace with it
    listing = json.loads(
        await (await k8s.CoreV1Api(kube).list_namespace(_preload_content=False)).read()
    )
    phases = {n["metadata"]["name"]: n["status"].get("phase") for n in listing["items"]}
    assert phases.get(project["namespace"]) in (None, "Terminating")


async def test_delete_inactive_and_never_activated(
    client: httpx.AsyncClient, kube: k8s.ApiClient
) -> None:
    keep = await new_project(client, "Keep")
    never = await new_project(client, "Never")
    activated = await new_project(client, "Once")
    assert (await client.post(url(activated, "activate"))).status_code == 200
    assert (await client.post(url(activated, "deactivate"))).status_code == 200
    assert (await client.delete(url(activated))).status_code == 204
    assert await deployment(kube, activated) is None
    assert (await client.delete(url(never))).status_code == 204
    # another project remains, so the namespace stays
    ns = await k8s.CoreV1Api(kube).read_namespace(keep["namespace"], _preload_content=False)
    assert json.loads(await ns.read())["status"]["phase"] == "Active"


async def test_events_stream_progress(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    async with live_console(request) as base, httpx.AsyncClient(base_url=base) as client:
        await _events_stream_progress(client)


async def _events_stream_progress(client: httpx.AsyncClient) -> None:
    project = await new_project(client)
    seen: list[dict[str, Any]] = []

    async def listen() -> None:
        async with client.stream("GET", url(project, "events")) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["status"] == "active":
                        return

    listener = asyncio.create_task(listen())
    for _ in range(500):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert seen[0]["step"] == "current" and seen[0]["status"] == "inactive"
    response = await client.post(url(project, "activate"), params={"wait": "false"})
    assert response.status_code == 202 and response.json()["status"] == "activating"
    await asyncio.wait_for(listener, 15)
    steps = [e["step"] for e in seen]
    assert steps[:6] == ["current", "start", "agent", "namespace", "secrets", "apply"]
    assert "health" in steps and steps[-1] == "ready"
    assert all(set(e) >= {"project_id", "status", "step", "message", "at"} for e in seen)
    assert (await client.get(url(project))).json()["status"] == "active"


async def test_events_of_unknown_project(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/alice/projects/abcdefgh/events")
    assert response.status_code == 404 and response.json()["code"] == "ProjectNotFound"


@pytest.mark.parametrize(
    ("image", "code", "words"),
    [
        ("goose-api:pull-error", "ImagePullFailed", "cannot be pulled"),
        ("goose-api:crash", "CrashLoop", "exit code 1"),
        ("goose-api:oom", "CrashLoop", "OOMKilled"),
    ],
)
async def test_classified_image_failures(
    console_env: dict[str, str],
    kube: k8s.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    image: str,
    code: str,
    words: str,
) -> None:
    monkeypatch.setenv("ACR_IMAGE", image)
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"))
        assert response.status_code == 502, response.text
        assert response.json()["code"] == code
        assert words in response.json()["detail"]
        stored = (await client.get(url(project))).json()
        assert stored["status"] == "failed" and stored["status_reason"] == code
        assert words in stored["status_message"]
        assert (await deployment(kube, project))["spec"]["replicas"] == 0
        # a failed project can be retried (and fails the same way), deactivated or deleted
        assert (await client.post(url(project, "activate"))).status_code == 502
        cleared = await client.post(url(project, "deactivate"))
        assert cleared.json()["status"] == "inactive" and cleared.json()["status_reason"] is None
        assert cleared.json()["status_message"] is None  # its pod stopped: nothing lingers
        assert (await client.delete(url(project))).status_code == 204


async def test_unschedulable(
    client: httpx.AsyncClient, sim: SimClusterThread, kube: k8s.ApiClient
) -> None:
    project = await new_project(client)
    sim.set_nodes_schedulable(False)
    response = await client.post(url(project, "activate"))
    assert response.status_code == 502 and response.json()["code"] == "Unschedulable"
    assert "No node can run" in response.json()["detail"]
    assert (await deployment(kube, project))["spec"]["replicas"] == 0
    sim.set_nodes_schedulable(True)
    assert (await client.post(url(project, "activate"))).json()["status"] == "active"


async def test_quota_exceeded(
    console_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    kube: k8s.ApiClient,
) -> None:
    monkeypatch.setenv("GOOSEUI_QUOTA_PODS", "0")
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"))
        assert response.status_code == 502 and response.json()["code"] == "QuotaExceeded"
        assert "exceeded quota" in response.json()["detail"]
        stored = (await client.get(url(project))).json()
        assert stored["status"] == "failed" and stored["status_reason"] == "QuotaExceeded"
        assert (await deployment(kube, project))["spec"]["replicas"] == 0


async def test_readiness_that_never_comes_times_out(
    console_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    kube: k8s.ApiClient,
) -> None:
    monkeypatch.setenv("ACR_IMAGE", "goose-api:never-ready")
    monkeypatch.setenv("GOOSEUI_ACTIVATION_TIMEOUT", "1.5")
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"))
        assert response.status_code == 504 and response.json()["code"] == "Timeout"
        assert "not ready within 1.5 s" in response.json()["detail"]
        stored = (await client.get(url(project))).json()
        assert stored["status"] == "failed" and stored["status_reason"] == "Timeout"
        assert (await deployment(kube, project))["spec"]["replicas"] == 0


async def test_api_errors_are_retried(client: httpx.AsyncClient, sim: SimClusterThread) -> None:
    project = await new_project(client)
    sim.fail_requests("/apis/apps/v1/namespaces", 503, count=2)
    sim.fail_requests("/api/v1/namespaces", 429, count=1, retry_after=0.2)
    response = await client.post(url(project, "activate"))
    assert response.status_code == 200, response.text


async def test_api_down_is_cluster_unavailable(
    client: httpx.AsyncClient, sim: SimClusterThread, kube: k8s.ApiClient
) -> None:
    project = await new_project(client)
    sim.fail_requests(
        f"/apis/apps/v1/namespaces/{project['namespace']}/deployments",
        503,
        count=None,
        method="PATCH",
    )
    response = await client.post(url(project, "activate"))
    assert response.status_code == 503 and response.json()["code"] == "ClusterUnavailable"
    assert "keeps failing" in response.json()["detail"]
    stored = (await client.get(url(project))).json()
    assert stored["status"] == "failed" and stored["status_reason"] == "ClusterUnavailable"
    dep = await deployment(kube, project)
    assert dep is None or dep["spec"]["replicas"] == 0
    sim.clear_faults()
    assert (await client.post(url(project, "activate"))).json()["status"] == "active"


async def test_forbidden(client: httpx.AsyncClient, sim: SimClusterThread) -> None:
    project = await new_project(client)
    sim.fail_requests(
        "/api/v1/namespaces",
        403,
        count=None,
        method="PATCH",
        message='namespaces is forbidden: User "gooseui" cannot patch resource',
    )
    response = await client.post(url(project, "activate"))
    assert response.status_code == 502 and response.json()["code"] == "Forbidden"
    assert "cannot patch" in response.json()["detail"]


async def test_concurrent_activations_start_one(
    client: httpx.AsyncClient, kube: k8s.ApiClient
) -> None:
    project = await new_project(client)
    responses = await asyncio.gather(*[client.post(url(project, "activate")) for _ in range(10)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1 and statuses.count(409) == 9, statuses
    assert all(r.json()["code"] == "InTransition" for r in responses if r.status_code == 409)
    assert (await client.get(url(project))).json()["status"] == "active"
    assert (await deployment(kube, project))["status"]["readyReplicas"] == 1


async def test_activate_during_delete_conflicts(
    client: httpx.AsyncClient, kube: k8s.ApiClient
) -> None:
    project = await new_project(client)
    assert (await client.post(url(project, "activate"))).status_code == 200
    deleting = asyncio.create_task(client.delete(url(project)))
    for _ in range(200):
        if (await client.get(url(project))).json().get("status") == "deleting":
            break
        await asyncio.sleep(0.005)
    conflict = await client.post(url(project, "activate"))
    assert conflict.status_code == 409 and conflict.json()["code"] == "InTransition"
    assert (await deleting).status_code == 204
    assert await deployment(kube, project) is None


async def test_no_cluster_configured(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.delenv("KUBECONFIG")
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"))
        assert response.status_code == 503 and response.json()["code"] == "ClusterUnavailable"
        assert "KUBECONFIG" in response.json()["detail"]
        assert (await client.get(url(project))).json()["status"] == "inactive"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "cluster" in ready.json()["detail"]
        renamed = await client.put(url(project), json={"name": "Still works"})
        assert renamed.status_code == 200
        assert (await client.delete(url(project))).status_code == 204


async def test_restart_mid_activation_is_reconciled(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    kube: k8s.ApiClient,
    sim: SimClusterThread,
) -> None:
    sim.set_slow_readiness(5.0)
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"), params={"wait": "false"})
        assert response.status_code == 202
        for _ in range(200):
            if await pods(kube, project):
                break
            await asyncio.sleep(0.01)
    # the console stopped mid-activation: its record still says so, and the operator still
    # wants it to run, so the next console finishes the work
    sim.set_slow_readiness(0.0)
    async with console(request) as client:
        ready = (await client.get("/readyz")).json()
        assert "1 fixed" in ready["checks"]["cluster"]["reconciliation"]["summary"]
        stored = await settled(client, project)
        assert stored["status"] == "active" and stored["endpoint"], stored
        assert (await deployment(kube, project))["spec"]["replicas"] == 1


async def test_a_deleted_deployment_is_recreated_and_orphans_reported(
    console_env: dict[str, str], request: pytest.FixtureRequest, kube: k8s.ApiClient
) -> None:
    async with console(request) as client:
        project = await new_project(client)
        other = await new_project(client, "Other")
        for p in (project, other):
            assert (await client.post(url(p, "activate"))).status_code == 200
    apps = k8s.AppsV1Api(kube)
    await apps.delete_namespaced_deployment(project["deployment"], project["namespace"])
    # a managed Deployment without a record: the record of `other` goes away behind its back
    from pymongo import AsyncMongoClient

    mongo: AsyncMongoClient = AsyncMongoClient(console_env["MONGO_URI"])
    await mongo[console_env["MONGO_DB"]]["projects"].delete_one({"project_id": other["project_id"]})
    await mongo.close()
    async with console(request) as client:
        report = (await client.get("/readyz")).json()["checks"]["cluster"]["reconciliation"]
        assert report["orphans"] == [f"{other['namespace']}/{other['deployment']}"]
        assert any("its Deployment is gone -> activated again" in f for f in report["fixed"])
        # the operator wanted it running: it runs again
        stored = await settled(client, project)
        assert stored["status"] == "active", stored
        assert (await deployment(kube, project))["spec"]["replicas"] == 1
    # an orphan is reported, never deleted
    assert await deployment(kube, other) is not None


async def test_a_transition_no_task_works_on_can_be_taken_over(
    client: httpx.AsyncClient, console_env: dict[str, str]
) -> None:
    # e.g. MongoDB failed at the last write of an activation: the record says `activating`
    project = await new_project(client)
    from pymongo import AsyncMongoClient

    mongo: AsyncMongoClient = AsyncMongoClient(console_env["MONGO_URI"])
    await mongo[console_env["MONGO_DB"]]["projects"].update_one(
        {"project_id": project["project_id"]}, {"$set": {"status": "activating"}}
    )
    await mongo.close()
    response = await client.post(url(project, "activate"))
    assert response.status_code == 200 and response.json()["status"] == "active"


async def test_unused_route_kinds_do_not_block_delete(
    client: httpx.AsyncClient, sim: SimClusterThread
) -> None:
    # RBAC without httproutes (or a cluster without the Gateway API) answers 403/404
    project = await new_project(client)
    assert (await client.post(url(project, "activate"))).status_code == 200
    sim.fail_requests(
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{project['namespace']}", 403, count=None
    )
    assert (await client.delete(url(project))).status_code == 204


async def test_refused_reconciliation_does_not_stop_the_console(
    console_env: dict[str, str], request: pytest.FixtureRequest, sim: SimClusterThread
) -> None:
    sim.fail_requests(
        "/apis/apps/v1/deployments",
        403,
        count=None,
        method="GET",
        message="deployments.apps is forbidden: cannot list at the cluster scope",
    )
    async with console(request) as client:
        ready = (await client.get("/readyz")).json()
        report = ready["checks"]["cluster"]["reconciliation"]
        assert "forbidden" in report["error"]
        assert (await client.post("/users/alice/projects", json={"name": "ok"})).status_code == 201


async def test_auto_mode_falls_back_to_the_proxy(
    client: httpx.AsyncClient, console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nicegui import app

    from gooseui.cluster.endpoints import candidates

    runtime = app.state.runtime
    settings = runtime.settings.model_copy(update={"ingress_base_domain": "example.test"})
    options = candidates(settings, runtime.kube, "alice", "abcd1234", route_exists=True)
    assert (
        options[0]
        == "http://proj-abcd1234." + console_env["NAMESPACE_PREFIX"] + "alice.example.test"
    )
    assert options[1].endswith("/services/proj-abcd1234-api:3001/proxy")
    assert (
        candidates(
            settings.model_copy(update={"endpoint_mode": "ingress"}),
            runtime.kube,
            "alice",
            "abcd1234",
            route_exists=True,
        )
        == options[:1]
    )
    # a route that does not answer yet (here: a closed loopback port) gives way to the proxy
    project = await new_project(client)
    active = (await client.post(url(project, "activate"))).json()
    chosen = await runtime.lifecycle._first_healthy(["http://127.0.0.1:9", active["endpoint"]])
    assert chosen == active["endpoint"]


async def test_a_failed_project_whose_pod_still_runs_is_scaled_down(
    console_env: dict[str, str],
    kube: k8s.ApiClient,
    sim: SimClusterThread,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The API server refuses the scale-down of a failed activation; the reconciler repairs it."""
    monkeypatch.setenv("ACR_IMAGE", "goose-api:crash")
    monkeypatch.setenv("GOOSEUI_RECONCILE_INTERVAL", "0.5")
    async with console(request) as client:
        project = await new_project(client)
        stored = await fail_keeping_its_pod(client, kube, sim, project)
        assert stored["status"] == "failed" and stored["status_reason"] == "CrashLoop", stored
        assert (await deployment(kube, project))["spec"]["replicas"] == 1  # refused
        sim.clear_faults()

        async def stopped() -> bool:
            return await replicas_of(kube, project) == 0

        await until(stopped, 10)
        assert (await deployment(kube, project))["spec"]["replicas"] == 0
        # the failure and its reason stay for the operator
        stored = (await client.get(url(project))).json()
        assert stored["status"] == "failed" and stored["status_reason"] == "CrashLoop"
        report = (await client.get("/readyz")).json()["checks"]["cluster"]["reconciliation"]
        assert any("scaled to 0" in line for line in report["fixed"]), report


async def test_a_lost_final_status_write_is_repaired(
    console_env: dict[str, str],
    kube: k8s.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """MongoDB lost the last write of an activation: the record says `activating`, no task
    works on it, the pod is ready. The next pass finishes the activation."""
    from pymongo import AsyncMongoClient

    monkeypatch.setenv("GOOSEUI_RECONCILE_INTERVAL", "0.5")
    async with console(request) as client:
        project = await new_project(client)
        assert (await client.post(url(project, "activate"))).status_code == 200
        mongo: AsyncMongoClient = AsyncMongoClient(console_env["MONGO_URI"])
        await mongo[console_env["MONGO_DB"]]["projects"].update_one(
            {"project_id": project["project_id"]},
            {"$set": {"status": "activating", "endpoint": None}},
        )
        await mongo.close()
        await asyncio.sleep(0.1)
        stored = await settled(client, project)
        assert stored["status"] == "active" and stored["endpoint"], stored
        assert (await deployment(kube, project))["spec"]["replicas"] == 1


async def test_a_hanging_api_server_fails_fast_and_is_repaired_after(
    console_env: dict[str, str],
    kube: k8s.ApiClient,
    sim: SimClusterThread,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The API server answers nothing: activation fails within 15 s, /readyz answers within
    3 s, a deactivation gives up within 15 s; once it answers again, nothing is left running."""
    import time

    monkeypatch.setenv("GOOSEUI_RECONCILE_INTERVAL", "0.5")
    async with console(request) as client:
        running = await new_project(client, "Running")
        assert (await client.post(url(running, "activate"))).status_code == 200
        project = await new_project(client)
        sim.hang_requests("/")
        try:
            started = time.monotonic()
            response = await client.post(url(project, "activate"))
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "ClusterUnavailable"
            assert "does not answer" in response.json()["detail"]
            assert took <= 15, took
            started = time.monotonic()
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and time.monotonic() - started <= 3
            assert "cluster" in ready.json()["detail"]
            started = time.monotonic()
            stopped = await client.post(url(running, "deactivate"))
            assert stopped.status_code == 503 and time.monotonic() - started <= 15
            stored = (await client.get(url(running))).json()
            assert stored["status"] == "failed" and stored["status_reason"] == "ClusterUnavailable"
        finally:
            sim.clear_faults()
        # the API server is back: the pass scales down what should not run

        async def stopped() -> bool:
            return await replicas_of(kube, running) == 0

        await until(stopped, 10)
        assert (await deployment(kube, running))["spec"]["replicas"] == 0
        assert (await client.get(url(project))).json()["status"] == "failed"
        assert (await client.get("/readyz")).status_code == 200


async def test_changes_behind_the_consoles_back_are_repaired(
    console_env: dict[str, str],
    kube: k8s.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """kubectl scale --replicas=3, kubectl set image, kubectl delete namespace: the next
    pass puts each back as recorded, and the project ends `active`."""
    monkeypatch.setenv("GOOSEUI_RECONCILE_INTERVAL", "0.5")
    apps = k8s.AppsV1Api(kube)

    async with console(request) as client:
        project = await new_project(client)
        assert (await client.post(url(project, "activate"))).status_code == 200
        name, namespace = project["deployment"], project["namespace"]

        await apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": 3}})

        async def one_replica() -> bool:
            return await replicas_of(kube, project) == 1

        assert await until(one_replica)
        assert (await client.get(url(project))).json()["status"] == "active"

        patch = {"spec": {"template": {"spec": {"containers": [
            {"name": "goose-api", "image": "goose-api:someone-elses"}]}}}}  # fmt: skip
        await apps.patch_namespaced_deployment(name, namespace, patch)

        async def image_back() -> bool:
            dep = await deployment(kube, project)
            return dep["spec"]["template"]["spec"]["containers"][0]["image"] != (
                "goose-api:someone-elses"
            )

        assert await until(image_back)
        assert (await settled(client, project))["status"] == "active"

        await k8s.CoreV1Api(kube).delete_namespace(namespace)

        async def recreated() -> bool:
            dep = await deployment(kube, project)
            stored = (await client.get(url(project))).json()
            return bool(dep) and stored["status"] == "active"

        assert await until(recreated, 40)


async def test_mongodb_gone_during_an_activation_and_back(
    console_env: dict[str, str],
    sim: SimClusterThread,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The console's database stops answering (SIGSTOP) while an activation waits for its
    pod: the final status write fails. Once it answers again (SIGCONT), the project ends
    `active`, not `activating` for good."""
    import os
    import signal

    from nicegui import app

    monkeypatch.delenv("MONGO_URI")  # the console's own (embedded) database, to stop
    monkeypatch.setenv("GOOSEUI_RECONCILE_INTERVAL", "0.5")
    async with console(request) as client:
        project = await new_project(client)
        database = app.state.runtime.embedded._process.pid
        sim.set_slow_readiness(2.0)
        response = await client.post(url(project, "activate"), params={"wait": "false"})
        assert response.status_code == 202
        os.kill(database, signal.SIGSTOP)
        try:
            await asyncio.sleep(4.0)  # the pod gets ready meanwhile; the final write hangs
        finally:
            os.kill(database, signal.SIGCONT)
        sim.set_slow_readiness(0.0)
        stored = await settled(client, project, 40)
        assert stored["status"] == "active", stored


async def test_drift_is_noticed_by_the_watch_within_two_seconds(
    console_env: dict[str, str], kube: k8s.ApiClient, request: pytest.FixtureRequest
) -> None:
    """No periodic pass (GOOSEUI_RECONCILE_INTERVAL=0): the shared watch alone notices a
    Deployment scaled and one deleted behind the console's back, and each is put back."""
    import time

    assert console_env["GOOSEUI_RECONCILE_INTERVAL"] == "0"
    apps = k8s.AppsV1Api(kube)
    async with console(request) as client:
        project = await new_project(client)
        assert (await client.post(url(project, "activate"))).status_code == 200
        name, namespace = project["deployment"], project["namespace"]

        await apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": 3}})
        started = time.monotonic()

        async def one_replica() -> bool:
            return await replicas_of(kube, project) == 1

        assert await until(one_replica, 5)
        assert time.monotonic() - started <= 2.0

        await apps.delete_namespaced_deployment(name, namespace)
        started = time.monotonic()

        async def recreated() -> bool:
            return await replicas_of(kube, project) == 1

        assert await until(recreated, 5)
        assert time.monotonic() - started <= 2.0
        stored = await settled(client, project)
        assert stored["status"] == "active" and stored["endpoint"], stored
        report = (await client.get("/readyz")).json()["checks"]["cluster"]["reconciliation"]
        assert any("scaled to 1" in line for line in report["fixed"]), report
        assert any("Deployment is gone" in line for line in report["fixed"]), report


async def test_an_activation_waits_out_its_terminating_namespace(
    client: httpx.AsyncClient, kube: k8s.ApiClient
) -> None:
    """The user's last project took the namespace with it, and something in it holds a
    finalizer: the namespace stays Terminating. A new project's activation waits until the
    namespace is gone, then makes it again (nothing can be created in a terminating one)."""
    core = k8s.CoreV1Api(kube)
    first = await new_project(client, "First", user="bob")
    assert (await client.post(url(first, "activate"))).status_code == 200
    namespace = first["namespace"]
    held = {"metadata": {"name": "held", "finalizers": ["gooseui.test/hold"]}}
    await core.create_namespaced_config_map(namespace, held)
    assert (await client.delete(url(first))).status_code == 204
    current = await core.read_namespace(namespace)
    assert current.status.phase == "Terminating", current

    second = await new_project(client, "Second", user="bob")
    response = await client.post(url(second, "activate"), params={"wait": "false"})
    assert response.status_code == 202
    await asyncio.sleep(1.0)
    assert (await client.get(url(second))).json()["status"] == "activating"
    await core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    stored = await settled(client, second)
    assert stored["status"] == "active", stored
    fresh = await core.read_namespace(namespace)
    assert fresh.status.phase == "Active" and fresh.metadata.deletion_timestamp is None
    assert (await client.delete(url(second))).status_code == 204


async def test_deactivating_an_activation_cancels_it(
    console_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    kube: k8s.ApiClient,
) -> None:
    """An activation that never becomes ready is stopped by Deactivate: 200, `inactive`,
    scaled to 0, and a caller that waited on the activation hears it was cancelled."""
    monkeypatch.setenv("ACR_IMAGE", "goose-api:never-ready")
    async with console(request) as client:
        project = await new_project(client)
        waiting = asyncio.create_task(client.post(url(project, "activate")))
        assert await until(lambda: replicas_of(kube, project)) == 1  # under way in the cluster
        # two at once (a double click, two tabs): one cancels, the other is told it is busy
        first, second = await asyncio.gather(
            client.post(url(project, "deactivate")), client.post(url(project, "deactivate"))
        )
        assert sorted([first.status_code, second.status_code]) == [200, 409], (first, second)
        response = first if first.status_code == 200 else second
        assert (second if response is first else first).json()["code"] == "InTransition"
        stopped = response.json()
        assert stopped["status"] == "inactive"
        assert stopped["status_message"].startswith("Activation cancelled")
        assert await replicas_of(kube, project) == 0
        assert await until(lambda: _no_pods(kube, project))
        activation = await waiting
        assert activation.status_code == 409 and activation.json()["code"] == "Cancelled"
        # the reconciler does not resume it
        await asyncio.sleep(1.0)
        assert (await client.get(url(project))).json()["status"] == "inactive"


async def _no_pods(kube: k8s.ApiClient, project: dict[str, Any]) -> bool:
    return not await pods(kube, project)


async def test_the_timeline_of_a_transition_outlives_the_process(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    """Every step of the last transition, with its time, is stored with the transition's
    last write: a console started afresh shows it."""
    from nicegui import app

    async with console(request) as client:
        project = await new_project(client)
        assert (await client.post(url(project, "activate"))).status_code == 200
        live = await app.state.runtime.service.timeline(project["user_id"], project["project_id"])
    steps = [event.step for event in live]
    assert steps[0] == "start" and steps[-1] == "ready"
    assert {"agent", "namespace", "apply", "health"} <= set(steps)
    assert all(a.at <= b.at for a, b in itertools.pairwise(live))
    async with console(request) as client:
        stored = await app.state.runtime.service.timeline(project["user_id"], project["project_id"])
    assert [(e.step, e.message) for e in stored] == [(e.step, e.message) for e in live]
