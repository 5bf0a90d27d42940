"""Every injected fault, observed through the API the way a real cluster shows it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client

from gooseui.devcluster import SimClusterThread

Pods = list[dict[str, Any]]


def container_status(pods: Pods) -> dict[str, Any] | None:
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            return cs
    return None


def waiting_reason(pods: Pods) -> str | None:
    cs = container_status(pods)
    return ((cs or {}).get("state") or {}).get("waiting", {}).get("reason")


async def test_image_pull_error(kube: Any, namespace: str, project: Any) -> None:
    await project("proj-pull-api", wait=False, image="goose-api:pull-error")
    selector = "app.kubernetes.io/instance=proj-pull-api"
    pods = await kube.wait_pods(namespace, selector, lambda p: waiting_reason(p) == "ErrImagePull")
    assert pods[0]["status"]["phase"] == "Pending"
    assert "not found" in container_status(pods)["state"]["waiting"]["message"]
    pods = await kube.wait_pods(
        namespace, selector, lambda p: waiting_reason(p) == "ImagePullBackOff"
    )
    assert pods[0]["status"]["phase"] == "Pending"
    events = await kube.events(namespace, pods[0]["metadata"]["name"])
    failed = [e["message"] for e in events if e["reason"] == "Failed"]
    assert any(m.startswith('Failed to pull image "goose-api:pull-error"') for m in failed)
    assert "Error: ErrImagePull" in failed and "Error: ImagePullBackOff" in failed
    assert all(e["type"] == "Warning" for e in events if e["reason"] == "Failed")
    dep = await kube.apps.read_namespaced_deployment("proj-pull-api", namespace)
    conditions = {c.type: c for c in dep.status.conditions}
    assert (conditions["Available"].status, conditions["Available"].reason) == (
        "False",
        "MinimumReplicasUnavailable",
    )


@pytest.mark.parametrize(
    ("tag", "reason", "code"), [("crash", "Error", 1), ("oom", "OOMKilled", 137)]
)
async def test_crash_loop(
    kube: Any, namespace: str, project: Any, tag: str, reason: str, code: int
) -> None:
    await project("proj-crash-api", wait=False, image=f"goose-api:{tag}")
    selector = "app.kubernetes.io/instance=proj-crash-api"
    pods = await kube.wait_pods(
        namespace,
        selector,
        lambda p: (
            (container_status(p) or {}).get("restartCount", 0) >= 2
            and waiting_reason(p) == "CrashLoopBackOff"
        ),
    )
    cs = container_status(pods)
    assert pods[0]["status"]["phase"] == "Running"
    assert cs["ready"] is False
    assert "back-off" in cs["state"]["waiting"]["message"]
    terminated = cs["lastState"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == (reason, code)
    events = await kube.events(namespace, pods[0]["metadata"]["name"])
    assert any(
        e["reason"] == "BackOff" and "Back-off restarting failed container" in e["message"]
        for e in events
    )


async def test_never_ready(kube: Any, namespace: str, project: Any) -> None:
    await project("proj-nr-api", wait=False, image="goose-api:never-ready")
    selector = "app.kubernetes.io/instance=proj-nr-api"
    await kube.wait_event(namespace, "Unhealthy")
    pods = (await kube.core.list_namespaced_pod(namespace, label_selector=selector)).items
    assert pods[0].status.phase == "Running"
    assert pods[0].status.container_statuses[0].state.running is not None
    assert pods[0].status.container_statuses[0].ready is False
    ready = {c.type: c for c in pods[0].status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "ContainersNotReady")


async def test_quota_exceeded(kube: Any, namespace: str, project: Any) -> None:
    await kube.core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )
    await project("proj-quota-api", wait=False)

    def failed(dep: dict[str, Any]) -> bool:
        return any(
            c["type"] == "ReplicaFailure" for c in (dep.get("status") or {}).get("conditions") or []
        )

    dep = await kube.wait_deployment(namespace, "proj-quota-api", failed)
    cond = next(c for c in dep["status"]["conditions"] if c["type"] == "ReplicaFailure")
    assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
    assert (
        "is forbidden: exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0"
        in cond["message"]
    )
    assert cond["message"].startswith('pods "proj-quota-api-')
    assert (await kube.core.list_namespaced_pod(namespace)).items == []
    event = await kube.wait_event(namespace, "FailedCreate")
    assert event["type"] == "Warning" and "exceeded quota" in event["message"]
    assert event["involvedObject"]["kind"] == "ReplicaSet"
    # lifting the quota lets the ReplicaSet create its pod, and the failure goes away
    await kube.core.delete_namespaced_resource_quota("no-pods", namespace)
    dep = await kube.wait_ready(namespace, "proj-quota-api")
    assert not failed(dep)


async def test_compute_quota_with_limit_range_defaults(
    kube: Any, namespace: str, project: Any
) -> None:
    await kube.core.create_namespaced_limit_range(
        namespace,
        {
            "metadata": {"name": "defaults"},
            "spec": {
                "limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}}]
            },
        },
    )
    await kube.core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "small"}, "spec": {"hard": {"requests.cpu": "400m"}}}
    )
    await project("proj-cpu-api", wait=False)

    def failed(dep: dict[str, Any]) -> bool:
        conditions = (dep.get("status") or {}).get("conditions") or []
        return any(c["type"] == "ReplicaFailure" for c in conditions)

    dep = await kube.wait_deployment(namespace, "proj-cpu-api", failed)
    cond = next(c for c in dep["status"]["conditions"] if c["type"] == "ReplicaFailure")
    assert cond["message"].endswith(
        "exceeded quota: small, requested: requests.cpu=500m, used: requests.cpu=0, "
        "limited: requests.cpu=400m"
    )
    await kube.core.patch_namespaced_resource_quota(
        "small", namespace, {"spec": {"hard": {"requests.cpu": "1", "requests.memory": "1Gi"}}}
    )
    await kube.wait_ready(namespace, "proj-cpu-api")
    pod = (await kube.core.list_namespaced_pod(namespace)).items[0]
    resources = pod.spec.containers[0].resources
    assert resources.requests == {"cpu": "500m", "memory": "128Mi"}
    assert resources.limits == {"cpu": "500m", "memory": "128Mi"}


async def test_quota_needs_stated_resources(kube: Any, namespace: str, project: Any) -> None:
    await kube.core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "mem"}, "spec": {"hard": {"requests.memory": "1Gi"}}}
    )
    await project("proj-mem-api", wait=False)
    event = await kube.wait_event(namespace, "FailedCreate")
    assert event["message"].endswith(
        "is forbidden: failed quota: mem: must specify requests.memory"
    )


async def test_pod_security_rejection(kube: Any, namespace: str, project: Any) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    await kube.core.patch_namespace(namespace, {"metadata": {"labels": labels}})
    await project("proj-psa-api", wait=False)

    def failed(dep: dict[str, Any]) -> bool:
        conditions = (dep.get("status") or {}).get("conditions") or []
        return any(c["type"] == "ReplicaFailure" for c in conditions)

    dep = await kube.wait_deployment(namespace, "proj-psa-api", failed)
    cond = next(c for c in dep["status"]["conditions"] if c["type"] == "ReplicaFailure")
    assert cond["reason"] == "FailedCreate"
    assert (
        'is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation'
        in cond["message"]
    )
    assert "runAsNonRoot != true" in cond["message"]
    await project("proj-psa-api", restricted=True)  # a compliant template rolls out


async def test_unschedulable_node(
    kube: Any, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    sim.set_nodes_schedulable(False)
    await project("proj-sched-api", wait=False)
    selector = "app.kubernetes.io/instance=proj-sched-api"

    def unschedulable(pods: Pods) -> bool:
        return any(
            c["type"] == "PodScheduled"
            and c["status"] == "False"
            and c.get("reason") == "Unschedulable"
            for p in pods
            for c in (p.get("status") or {}).get("conditions") or []
        )

    pods = await kube.wait_pods(namespace, selector, unschedulable)
    cond = next(c for c in pods[0]["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["message"].startswith("0/1 nodes are available: 1 node(s) were unschedulable.")
    assert pods[0]["status"]["phase"] == "Pending"
    event = await kube.wait_event(namespace, "FailedScheduling")
    assert event["source"]["component"] == "default-scheduler"
    sim.set_nodes_schedulable(True)
    await kube.wait_ready(namespace, "proj-sched-api")


async def test_progress_deadline_exceeded(kube: Any, namespace: str, project: Any) -> None:
    await project("proj-slow-api", wait=False, image="goose-api:never-ready", progress_deadline=1)

    def timed_out(dep: dict[str, Any]) -> bool:
        return any(
            c["type"] == "Progressing" and c["reason"] == "ProgressDeadlineExceeded"
            for c in (dep.get("status") or {}).get("conditions") or []
        )

    dep = await kube.wait_deployment(namespace, "proj-slow-api", timed_out, within=8)
    cond = next(c for c in dep["status"]["conditions"] if c["type"] == "Progressing")
    assert cond["status"] == "False" and "has timed out progressing" in cond["message"]


async def test_injected_api_errors(
    kube: Any, namespace: str, sim: SimClusterThread, http: Any
) -> None:
    prefix = f"/api/v1/namespaces/{namespace}/services"
    sim.fail_requests(prefix, 503, count=2, method="GET")
    for _ in range(2):
        with pytest.raises(client.ApiException) as info:
            await kube.core.list_namespaced_service(namespace)
        body = json.loads(info.value.body)
        assert (info.value.status, body["kind"], body["reason"]) == (
            503,
            "Status",
            "ServiceUnavailable",
        )
    assert (await kube.core.list_namespaced_service(namespace)).items == []

    sim.fail_requests(prefix, 500, count=1)
    with pytest.raises(client.ApiException) as info:
        await kube.core.list_namespaced_service(namespace)
    assert json.loads(info.value.body)["reason"] == "InternalError"

    sim.fail_requests("/apis/apps/v1", 429, count=1, retry_after=2)
    response = await http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json()["details"]["retryAfterSeconds"] == 2
    assert response.json()["reason"] == "TooManyRequests"
    assert (await http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")).status_code == 200

    sim.fail_requests(prefix, 500, count=None, method="POST")
    assert (await http.get(prefix)).status_code == 200  # other methods are unaffected
    assert (await http.post(prefix, json={"metadata": {"name": "x"}})).status_code == 500
    sim.clear_faults()
    created = await http.post(
        prefix, json={"metadata": {"name": "x"}, "spec": {"ports": [{"port": 1}]}}
    )
    assert created.status_code == 201


async def test_slow_readiness(
    kube: Any, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    sim.set_slow_readiness(0.6)
    await project("proj-sluggish-api", wait=False)
    selector = "app.kubernetes.io/instance=proj-sluggish-api"
    pods = await kube.wait_pods(
        namespace, selector, lambda p: bool(p) and p[0]["status"].get("phase") == "Running"
    )
    assert all(not cs["ready"] for cs in pods[0]["status"]["containerStatuses"])
    await kube.wait_ready(namespace, "proj-sluggish-api")


async def test_a_hanging_api_server_answers_nothing_until_released(
    kube: Any, namespace: str, sim: SimClusterThread, kubectl_env: dict[str, str]
) -> None:
    """`hang_requests`: no answer, no error; a client's own timeout is all that ends the wait."""
    import asyncio
    import shutil
    import subprocess
    import time

    prefix = f"/api/v1/namespaces/{namespace}/services"
    sim.hang_requests(prefix)
    with pytest.raises(asyncio.TimeoutError):
        await kube.core.list_namespaced_service(namespace, _request_timeout=0.5)
    # other paths answer
    assert (await kube.core.read_namespace(namespace)).metadata.name == namespace
    if shutil.which("kubectl"):
        started = time.monotonic()
        result = await asyncio.to_thread(
            subprocess.run,
            ["kubectl", "--request-timeout=1s", "get", "services", "-n", namespace],
            env=kubectl_env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode != 0 and time.monotonic() - started < 10
        assert "timeout" in result.stderr.lower() or "deadline" in result.stderr.lower()
    # a request held when the fault clears is then served
    held = asyncio.create_task(kube.core.list_namespaced_service(namespace, _request_timeout=10))
    await asyncio.sleep(0.3)
    assert not held.done()
    sim.clear_faults()
    assert (await held).items == []
