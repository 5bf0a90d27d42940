"""The simulated API server driven by kubernetes-asyncio, as the console drives a real one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch

from gooseui.devcluster import SimClusterThread

TIMEOUT = (5, 30)


def status_of(exc: client.ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


async def test_apply_deployment_and_service_become_ready(
    kube: Any, namespace: str, project: Any
) -> None:
    dep = await project("proj-abc-api")
    assert dep["status"]["availableReplicas"] == 1
    conditions = {c["type"]: c for c in dep["status"]["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["progressDeadlineSeconds"] == 600  # defaulted
    assert dep["metadata"]["generation"] == dep["status"]["observedGeneration"]
    pods = await kube.core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/instance=proj-abc-api"
    )
    (pod,) = pods.items
    rs_hash = pod.metadata.labels["pod-template-hash"]
    assert pod.metadata.name.startswith(f"proj-abc-api-{rs_hash}-")
    assert len(pod.metadata.name.rsplit("-", 1)[1]) == 5
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == (
        "ReplicaSet",
        f"proj-abc-api-{rs_hash}",
        True,
    )
    assert pod.status.phase == "Running"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    assert pod.spec.containers[0].image_pull_policy == "Always"
    svc = await kube.core.read_namespaced_service("proj-abc-api", namespace)
    assert svc.spec.cluster_ip.startswith("10.96.")
    assert svc.spec.ports[0].target_port == 3001
    reasons = [e["reason"] for e in await kube.events(namespace, pod.metadata.name)]
    for reason in ("Scheduled", "Pulling", "Pulled", "Created", "Started"):
        assert reason in reasons
    dep_events = await kube.events(namespace, "proj-abc-api")
    assert any(e["reason"] == "ScalingReplicaSet" for e in dep_events)


async def test_scale_with_apply_and_with_scale_subresource(
    manifests: Any, kube: Any, namespace: str, project: Any
) -> None:
    name = "proj-scale-api"
    await project(name)
    manifest = manifests.deployment(name, replicas=0)
    await kube.apply_deployment(
        namespace, manifest, force=False
    )  # same manager, new value: no conflict
    await kube.wait_pods(namespace, f"app.kubernetes.io/instance={name}", lambda pods: not pods)
    dep = await kube.wait_ready(namespace, name, replicas=0)
    assert "readyReplicas" not in dep["status"]  # zero counters are omitted, as the real API does
    assert {c["type"]: c["status"] for c in dep["status"]["conditions"]}["Available"] == "True"

    await kube.apply_deployment(namespace, manifests.deployment(name, replicas=1), force=False)
    await kube.wait_ready(namespace, name)

    scale = await kube.apps.patch_namespaced_deployment_scale(
        name,
        namespace,
        {"spec": {"replicas": 0}},
        field_manager="kubectl-scale",
        _request_timeout=TIMEOUT,
    )
    assert scale.spec.replicas == 0
    read = await kube.apps.read_namespaced_deployment_scale(name, namespace)
    assert read.spec.replicas == 0
    assert read.status.selector == f"app.kubernetes.io/instance={name}"
    await kube.wait_pods(namespace, f"app.kubernetes.io/instance={name}", lambda pods: not pods)

    with pytest.raises(client.ApiException) as info:
        await kube.apply_deployment(namespace, manifests.deployment(name, replicas=1), force=False)
    status = status_of(info.value)
    assert info.value.status == 409 and status["reason"] == "Conflict"
    assert status["message"].startswith(
        'Apply failed with 1 conflict: conflict with "kubectl-scale"'
    )
    assert status["details"]["causes"][0]["field"] == ".spec.replicas"

    await kube.apply_deployment(namespace, manifests.deployment(name, replicas=1), force=True)
    await kube.wait_ready(namespace, name)
    dep = await kube.apps.read_namespaced_deployment(name, namespace)
    managers = {(f.manager, f.operation) for f in dep.metadata.managed_fields}
    assert ("gooseui", "Apply") in managers


async def test_the_replica_set_controller_records_its_pods(
    manifests: Any, kube: Any, namespace: str, project: Any
) -> None:
    """SuccessfulCreate / SuccessfulDelete on the ReplicaSet, as the real replicaset-controller
    records them (`kubectl describe rs`), and found by the events' field selectors."""
    name = "proj-rsev-api"
    await project(name)
    (pod,) = (
        await kube.core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={name}"
        )
    ).items
    rs_name = pod.metadata.owner_references[0].name
    await kube.apply_deployment(namespace, manifests.deployment(name, replicas=0), force=False)
    await kube.wait_pods(namespace, f"app.kubernetes.io/instance={name}", lambda pods: not pods)
    for _ in range(100):
        events = await kube.events(namespace, rs_name)
        if any(e["reason"] == "SuccessfulDelete" for e in events):
            break
        await asyncio.sleep(0.05)
    by_reason = {e["reason"]: e for e in events}
    created, deleted = by_reason["SuccessfulCreate"], by_reason["SuccessfulDelete"]
    assert created["message"] == f"Created pod: {pod.metadata.name}"
    assert deleted["message"] == f"Deleted pod: {pod.metadata.name}"
    for event in (created, deleted):
        assert event["type"] == "Normal" and event["source"]["component"] == "replicaset-controller"
        assert event["involvedObject"]["kind"] == "ReplicaSet"
        assert event["involvedObject"]["name"] == rs_name
    listing = await kube.core.list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.kind=ReplicaSet,involvedObject.name={rs_name}",
        _request_timeout=TIMEOUT,
    )
    assert {e.reason for e in listing.items} == {"SuccessfulCreate", "SuccessfulDelete"}


async def test_replace_scale_subresource(kube: Any, namespace: str, project: Any) -> None:
    await project("proj-put-api", wait=False, replicas=0)
    scale = await kube.apps.read_namespaced_deployment_scale("proj-put-api", namespace)
    scale.spec.replicas = 2
    updated = await kube.apps.replace_namespaced_deployment_scale("proj-put-api", namespace, scale)
    assert updated.spec.replicas == 2
    await kube.wait_ready(namespace, "proj-put-api", replicas=2)
    stale = scale  # carries the old resourceVersion
    stale.spec.replicas = 0
    with pytest.raises(client.ApiException) as info:
        await kube.apps.replace_namespaced_deployment_scale("proj-put-api", namespace, stale)
    assert info.value.status == 409


async def test_label_and_field_selectors(kube: Any, namespace: str) -> None:
    for name, tier in (("alpha", "web"), ("beta", "db"), ("gamma", None)):
        labels = {"team": "x"} | ({"tier": tier} if tier else {})
        await kube.core.create_namespaced_service(
            namespace,
            {"metadata": {"name": name, "labels": labels}, "spec": {"ports": [{"port": 80}]}},
        )

    async def names(selector: str | None = None, field: str | None = None) -> list[str]:
        listing = await kube.core.list_namespaced_service(
            namespace, label_selector=selector, field_selector=field
        )
        return sorted(s.metadata.name for s in listing.items)

    assert await names("tier=web") == ["alpha"]
    assert await names("tier==db") == ["beta"]
    assert await names("tier!=web") == ["beta", "gamma"]
    assert await names("tier in (web,db)") == ["alpha", "beta"]
    assert await names("tier notin (web)") == ["beta", "gamma"]
    assert await names("tier") == ["alpha", "beta"]
    assert await names("!tier") == ["gamma"]
    assert await names("team=x,tier in (db, web)") == ["alpha", "beta"]
    assert await names(field="metadata.name=gamma") == ["gamma"]
    assert await names(field="metadata.name!=gamma") == ["alpha", "beta"]
    with pytest.raises(client.ApiException) as info:
        await names("tier in (")
    assert info.value.status == 400


async def test_watch_events_arrive_in_order(kube: Any, namespace: str) -> None:
    listing = await kube.core.list_namespaced_service(namespace)
    start = listing.metadata.resource_version
    body = {
        "metadata": {"name": "watched", "labels": {"a": "1"}},
        "spec": {"ports": [{"port": 80}]},
    }
    await kube.core.create_namespaced_service(namespace, body)
    await kube.core.patch_namespaced_service(
        "watched", namespace, {"metadata": {"labels": {"a": "2"}}}
    )
    await kube.core.delete_namespaced_service("watched", namespace)
    seen: list[tuple[str, int]] = []
    async with watch.Watch() as w:
        async for event in w.stream(
            kube.core.list_namespaced_service,
            namespace,
            resource_version=start,
            timeout_seconds=1,
            allow_watch_bookmarks=True,
            _request_timeout=TIMEOUT,
        ):
            seen.append((event["type"], int(event["raw_object"]["metadata"]["resourceVersion"])))
            if event["type"] == "DELETED":
                break
    assert [t for t, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [rv for _, rv in seen]
    assert versions == sorted(versions) and len(set(versions)) == 3


async def test_watch_without_resource_version_starts_with_current_state(
    kube: Any, namespace: str
) -> None:
    await kube.core.create_namespaced_service(
        namespace, {"metadata": {"name": "s1"}, "spec": {"ports": [{"port": 1}]}}
    )
    async with watch.Watch() as w:
        async for event in w.stream(
            kube.core.list_namespaced_service, namespace, timeout_seconds=1
        ):
            assert (event["type"], event["object"].metadata.name) == ("ADDED", "s1")
            break


async def test_watch_label_change_is_seen_as_added_and_deleted(kube: Any, namespace: str) -> None:
    listing = await kube.core.list_namespaced_service(namespace)
    await kube.core.create_namespaced_service(
        namespace, {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}}
    )
    await kube.core.patch_namespaced_service(
        "s", namespace, {"metadata": {"labels": {"pick": "me"}}}
    )
    await kube.core.patch_namespaced_service(
        "s", namespace, {"metadata": {"labels": {"pick": "other"}}}
    )
    types = []
    async with watch.Watch() as w:
        async for event in w.stream(
            kube.core.list_namespaced_service,
            namespace,
            label_selector="pick=me",
            resource_version=listing.metadata.resource_version,
            timeout_seconds=1,
        ):
            types.append(event["type"])
    assert types == ["ADDED", "DELETED"]


async def test_not_found_already_exists_and_conflict(kube: Any, namespace: str) -> None:
    with pytest.raises(client.ApiException) as info:
        await kube.apps.read_namespaced_deployment("missing", namespace)
    status = status_of(info.value)
    assert (info.value.status, status["reason"], status["kind"]) == (404, "NotFound", "Status")
    assert status["message"] == 'deployments.apps "missing" not found'
    assert status["details"] == {"name": "missing", "group": "apps", "kind": "deployments"}

    body = {"metadata": {"name": "dup"}, "spec": {"ports": [{"port": 80}]}}
    first = await kube.core.create_namespaced_service(namespace, body)
    with pytest.raises(client.ApiException) as info:
        await kube.core.create_namespaced_service(namespace, body)
    assert (info.value.status, status_of(info.value)["reason"]) == (409, "AlreadyExists")

    first.metadata.labels = {"v": "1"}
    updated = await kube.core.replace_namespaced_service("dup", namespace, first)
    assert int(updated.metadata.resource_version) > int(first.metadata.resource_version)
    first.metadata.labels = {"v": "2"}  # still the old resourceVersion
    with pytest.raises(client.ApiException) as info:
        await kube.core.replace_namespaced_service("dup", namespace, first)
    status = status_of(info.value)
    assert (info.value.status, status["reason"]) == (409, "Conflict")
    assert "the object has been modified" in status["message"]
    assert updated.spec.cluster_ip == first.spec.cluster_ip


async def test_invalid_names_and_objects_are_422(manifests: Any, kube: Any, namespace: str) -> None:
    with pytest.raises(client.ApiException) as info:
        await kube.apply_deployment(namespace, manifests.deployment("Bad_Name"))
    status = status_of(info.value)
    assert (info.value.status, status["reason"]) == (422, "Invalid")
    cause = status["details"]["causes"][0]
    assert (cause["reason"], cause["field"]) == ("FieldValueInvalid", "metadata.name")
    assert "RFC 1123" in cause["message"]

    broken = manifests.deployment("no-selector-match")
    broken["spec"]["selector"] = {"matchLabels": {"other": "x"}}
    with pytest.raises(client.ApiException) as info:
        await kube.apply_deployment(namespace, broken)
    fields = [c["field"] for c in status_of(info.value)["details"]["causes"]]
    assert "spec.template.metadata.labels" in fields

    with pytest.raises(client.ApiException) as info:
        await kube.core.create_namespace({"metadata": {"name": "UPPER"}})
    assert info.value.status == 422


async def test_too_old_resource_version_is_410(
    kube: Any, namespace: str, sim: SimClusterThread
) -> None:
    listing = await kube.core.list_namespaced_service(namespace)
    await kube.core.create_namespaced_service(
        namespace, {"metadata": {"name": "x"}, "spec": {"ports": [{"port": 1}]}}
    )
    sim.compact_history()
    with pytest.raises(client.ApiException) as info:
        async with watch.Watch() as w:
            async for _ in w.stream(
                kube.core.list_namespaced_service,
                namespace,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=1,
            ):
                pass
    assert info.value.status == 410
    assert "Expired" in info.value.reason


async def test_patch_flavours(
    kube: Any, namespace: str, project: Any, agent_env: dict[str, str]
) -> None:
    await project("proj-patch-api", wait=False, replicas=0)
    name = "proj-patch-api"
    # strategic merge: containers merge by name, env by name
    patched = await kube.apps.patch_namespaced_deployment(
        name,
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "goose-api", "env": [{"name": "EXTRA", "value": "1"}]}
                        ]
                    }
                }
            }
        },
    )
    container = patched.spec.template.spec.containers[0]
    assert container.image == "goose-api:latest"
    # a strategic merge adds to the list (keyed by name): what the manifest had, then EXTRA
    assert [e.name for e in container.env] == ["USER_ID", "PROJECT_ID", *agent_env, "EXTRA"]
    assert patched.metadata.generation == 2
    # JSON merge patch replaces lists
    merged = await kube.apps.patch_namespaced_deployment(
        name,
        namespace,
        {"metadata": {"annotations": {"note": "hi"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged.metadata.annotations["note"] == "hi"
    assert merged.metadata.generation == 2  # metadata-only change
    # JSON patch
    jp = await kube.apps.patch_namespaced_deployment(
        name,
        namespace,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 0},
            {"op": "add", "path": "/metadata/labels/x", "value": "y"},
        ],
        _content_type="application/json-patch+json",
    )
    assert jp.metadata.labels["x"] == "y"


async def test_namespace_deletion_cascades(
    kube: Any, core: client.CoreV1Api, project: Any, namespace: str
) -> None:
    await project("proj-gone-api")
    await core.delete_namespace(namespace, _request_timeout=TIMEOUT)
    ns = await core.read_namespace(namespace)
    assert ns.status.phase == "Terminating"
    assert ns.metadata.deletion_timestamp is not None
    with pytest.raises(client.ApiException) as info:
        await kube.core.create_namespaced_service(
            namespace, {"metadata": {"name": "late"}, "spec": {"ports": [{"port": 1}]}}
        )
    assert info.value.status == 403 and "being terminated" in status_of(info.value)["message"]
    async with asyncio.timeout(10), watch.Watch() as w:
        async for event in w.stream(
            core.list_namespace, field_selector=f"metadata.name={namespace}", timeout_seconds=10
        ):
            if event["type"] == "DELETED":
                break
    for lister in (
        kube.apps.list_deployment_for_all_namespaces,
        kube.apps.list_replica_set_for_all_namespaces,
        kube.core.list_pod_for_all_namespaces,
        kube.core.list_service_for_all_namespaces,
    ):
        listing = await lister(field_selector=f"metadata.namespace={namespace}")
        assert listing.items == []


async def test_deleting_a_deployment_takes_its_pods(
    kube: Any, namespace: str, project: Any
) -> None:
    await project("proj-del-api")
    await kube.apps.delete_namespaced_deployment("proj-del-api", namespace)
    pods = await kube.wait_pods(
        namespace, "app.kubernetes.io/instance=proj-del-api", lambda pods: not pods
    )
    assert pods == []
    rs = await kube.apps.list_namespaced_replica_set(namespace)
    assert rs.items == []


async def test_foreground_deletion_waits_for_dependents(
    kube: Any, namespace: str, project: Any
) -> None:
    await project("proj-fg-api")
    dep = await kube.apps.delete_namespaced_deployment(
        "proj-fg-api", namespace, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    assert dep is not None
    still = await kube.apps.read_namespaced_deployment("proj-fg-api", namespace)
    assert "foregroundDeletion" in still.metadata.finalizers
    listing = await kube.apps.list_namespaced_deployment(namespace)
    async with asyncio.timeout(10), watch.Watch() as w:
        async for event in w.stream(
            kube.apps.list_namespaced_deployment,
            namespace,
            resource_version=listing.metadata.resource_version,
            timeout_seconds=10,
        ):
            if event["type"] == "DELETED":
                break
    pods = await kube.core.list_namespaced_pod(namespace)
    assert pods.items == []


async def test_requests_without_the_token_are_401(cluster: SimClusterThread, http: Any) -> None:
    response = await http.get("/api/v1/namespaces", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"
    assert (await http.get("/api/v1/namespaces/default")).status_code == 200


async def test_discovery_and_openapi(http: Any) -> None:
    assert (await http.get("/version")).json()["major"] == "1"
    groups = {g["name"] for g in (await http.get("/apis")).json()["groups"]}
    assert {"apps", "autoscaling", "networking.k8s.io", "gateway.networking.k8s.io"} <= groups
    resources = {r["name"]: r for r in (await http.get("/apis/apps/v1")).json()["resources"]}
    assert (resources["deployments/scale"]["group"], resources["deployments/scale"]["kind"]) == (
        "autoscaling",
        "Scale",
    )
    core = {r["name"] for r in (await http.get("/api/v1")).json()["resources"]}
    assert {
        "services/proxy",
        "pods",
        "events",
        "resourcequotas",
        "limitranges",
        "namespaces",
    } <= core
    index = (await http.get("/openapi/v3")).json()["paths"]
    doc = (await http.get(index["apis/apps/v1"]["serverRelativeURL"])).json()
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    missing = await http.get("/apis/apps/v1/namespaces/default/nothings")
    assert missing.status_code == 404 and missing.json()["kind"] == "Status"
    not_allowed = await http.put("/apis/apps/v1/namespaces/default/deployments", json={})
    assert not_allowed.status_code == 405 and not_allowed.json()["reason"] == "MethodNotAllowed"


async def test_other_resources_are_stored(kube: Any, api: Any, namespace: str) -> None:
    net = client.NetworkingV1Api(api)
    ingress = {
        "metadata": {"name": "proj-x"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "proj-x.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "proj-x-api", "port": {"number": 3001}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }
    created = await net.create_namespaced_ingress(namespace, ingress)
    assert created.metadata.generation == 1
    policy = {
        "metadata": {"name": "allow"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    await net.create_namespaced_network_policy(namespace, policy)
    await kube.core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "5"}}}
    )
    await kube.core.create_namespaced_limit_range(
        namespace,
        {
            "metadata": {"name": "l"},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]},
        },
    )
    custom = client.CustomObjectsApi(api)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "proj-x"},
        "spec": {
            "parentRefs": [{"name": "gw", "namespace": "gateways"}],
            "hostnames": ["proj-x.example.com"],
            "rules": [{"backendRefs": [{"name": "proj-x-api", "port": 3001}]}],
        },
    }
    await custom.patch_namespaced_custom_object(
        "gateway.networking.k8s.io",
        "v1",
        namespace,
        "httproutes",
        "proj-x",
        route,
        field_manager="gooseui",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    listed = await custom.list_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["proj-x"]
    quota = await kube.core.read_namespaced_resource_quota("q", namespace)
    assert quota.status.hard == {"pods": "5"}
