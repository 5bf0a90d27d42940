"""The simulator is exactly as strict as AKS: Secrets and ConfigMaps, the kubelet's
environment and volume resolution, agents that exit, pod logs, NetworkPolicy on the
service proxy, discovery, and Gateway API status.

Everything is observed over real protocols: kubernetes-asyncio with the simulator's
kubeconfig, kubectl in a subprocess, httpx through the API server. `SimCluster.launches()`
shows what the kubelet handed each agent start (environment and files).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client, watch

from gooseui.devcluster import SimClusterThread
from gooseui.devcluster.netpol import TrafficSource, admits, source_from
from tests.devcluster.conftest import deployment_manifest

TIMEOUT = (5, 30)
GOOSE_IMAGE = "goose-api:latest"
GW_GROUP = "gateway.networking.k8s.io"
CONTROLLER = "gooseui.io/simulated-gateway"
CLASS = "gooseui-simulated"
Obj = dict[str, Any]
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def status_of(exc: client.ApiException) -> Obj:
    return json.loads(exc.body)


def kubectl(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def agent_deployment(
    name: str,
    env: list[Obj] | None = None,
    env_from: list[Obj] | None = None,
    volumes: list[Obj] | None = None,
    mounts: list[Obj] | None = None,
    image: str = GOOSE_IMAGE,
    service_links: bool | None = None,
    **container_fields: Any,
) -> Obj:
    """A Deployment shaped like the console's (one goose-api container, health probe)."""
    container: Obj = {
        "name": "goose-api",
        "image": image,
        "ports": [{"containerPort": 3001, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/api/v1/health", "port": "http"}},
        **container_fields,
    }
    if env is not None:
        container["env"] = env
    if env_from is not None:
        container["envFrom"] = env_from
    if mounts is not None:
        container["volumeMounts"] = mounts
    pod_spec: Obj = {"containers": [container]}
    if volumes is not None:
        pod_spec["volumes"] = volumes
    if service_links is not None:
        pod_spec["enableServiceLinks"] = service_links
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/instance": name, "app": "goose"}},
                "spec": pod_spec,
            },
        },
    }


def plain_env(values: dict[str, str]) -> list[Obj]:
    return [{"name": k, "value": v} for k, v in values.items()]


def container_status(pods: list[Obj]) -> Obj:
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            return cs
    return {}


def waiting(pods: list[Obj]) -> Obj:
    return (container_status(pods).get("state") or {}).get("waiting") or {}


def ready(pods: list[Obj]) -> bool:
    return len(pods) == 1 and container_status(pods).get("ready") is True


class Waits:
    """List-then-watch waits (no polling) over kubernetes-asyncio."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube = kube
        self.ns = namespace
        self.custom = client.CustomObjectsApi(kube.core.api_client)

    async def pods(
        self, name: str, done: Callable[[list[Obj]], bool], within: float = 15
    ) -> list[Obj]:
        return await self.kube.wait_pods(
            self.ns, f"app.kubernetes.io/instance={name}", done, within
        )

    async def event(self, reason: str, contains: str, within: float = 15) -> Obj:
        core = self.kube.core
        listing = await core.list_namespaced_event(self.ns, _request_timeout=TIMEOUT)
        for item in listing.items:
            if item.reason == reason and contains in (item.message or ""):
                return core.api_client.sanitize_for_serialization(item)
        async with asyncio.timeout(within), watch.Watch() as w:
            async for ev in w.stream(
                core.list_namespaced_event,
                self.ns,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=int(within) + 1,
                _request_timeout=TIMEOUT,
            ):
                raw = ev["raw_object"]
                if raw.get("reason") == reason and contains in raw.get("message", ""):
                    return raw
        raise AssertionError(f"no {reason} event with {contains!r}")

    async def custom_object(
        self,
        plural: str,
        name: str,
        done: Callable[[Obj], bool],
        within: float = 10,
        ns: str | None = None,
    ) -> Obj:
        namespace = ns or self.ns
        listing = await self.custom.list_namespaced_custom_object(
            GW_GROUP, "v1", namespace, plural, field_selector=f"metadata.name={name}"
        )
        for item in listing["items"]:
            if done(item):
                return item
        async with asyncio.timeout(within), watch.Watch() as w:
            async for ev in w.stream(
                self.custom.list_namespaced_custom_object,
                GW_GROUP,
                "v1",
                namespace,
                plural,
                field_selector=f"metadata.name={name}",
                resource_version=listing["metadata"]["resourceVersion"],
                timeout_seconds=int(within) + 1,
            ):
                if done(ev["raw_object"]):
                    return ev["raw_object"]
        raise AssertionError(f"{plural}/{name} never reached the expected state")


@pytest.fixture
def waits(kube: Any, namespace: str) -> Waits:
    return Waits(kube, namespace)


@pytest.fixture
def apply(kube: Any, namespace: str) -> Callable[[Obj], Awaitable[Any]]:
    async def run(body: Obj) -> Any:
        return await kube.apply_deployment(namespace, body)

    return run


def last_launch(sim: SimClusterThread, namespace: str, pod: str | None = None) -> Any:
    launches = sim.launches(namespace, pod)
    assert launches, f"no agent was started in {namespace}"
    return launches[-1]


# ============================================================== Secrets and ConfigMaps


async def test_secret_string_data_is_folded_into_data(
    core: client.CoreV1Api, namespace: str
) -> None:
    created = await core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "agent-env", "labels": {"app": "goose"}},
            "stringData": {"GOOSE_PROVIDER": "simulated", "SHARED": "from-stringData"},
            "data": {"SHARED": b64("from-data"), "OTHER": b64("x")},
        },
    )
    raw = core.api_client.sanitize_for_serialization(created)
    assert "stringData" not in raw and "stringData" not in (raw.get("metadata") or {})
    assert raw["type"] == "Opaque"
    assert raw["data"] == {
        "GOOSE_PROVIDER": b64("simulated"),
        "SHARED": b64("from-stringData"),  # stringData wins, as on the real server
        "OTHER": b64("x"),
    }
    # a merge patch with stringData is folded too, and never stored
    patched = await core.patch_namespaced_secret(
        "agent-env", namespace, {"stringData": {"MONGODB_URL": "mongodb://u:p@db/"}}
    )
    assert patched.data["MONGODB_URL"] == b64("mongodb://u:p@db/")
    assert patched.string_data is None
    # server-side apply with stringData
    applied = await core.patch_namespaced_secret(
        "applied",
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "applied"},
            "stringData": {"A": "1"},
        },
        field_manager="gooseui",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    assert applied.data == {"A": b64("1")} and applied.type == "Opaque"
    listed = await core.list_namespaced_secret(namespace, label_selector="app=goose")
    assert [s.metadata.name for s in listed.items] == ["agent-env"]


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (
            {"data": {"K": "not base64!"}},
            400,
            'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input '
            "byte 3",
        ),
        ({"data": {"K": 3001}}, 400, "cannot unmarshal number into Go struct field Secret.data"),
        ({"data": {"a b": b64("x")}}, 422, 'data[a b]: Invalid value: "a b": a valid config key'),
        ({"data": {"..x": b64("x")}}, 422, "must not start with '..'"),
        (
            {"stringData": {"big": "x" * (1024 * 1024 + 1)}},
            422,
            "data: Too long: may not be more than 1048576 bytes",
        ),
        (
            {"type": "kubernetes.io/tls", "data": {"tls.crt": b64("c")}},
            422,
            "data[tls.key]: Required value",
        ),
        (
            {"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{"}},
            422,
            "data[.dockerconfigjson]: Invalid value",
        ),
    ],
)
async def test_secret_validation(
    http: httpx.AsyncClient, namespace: str, body: Obj, code: int, text: str
) -> None:
    response = await http.post(
        f"/api/v1/namespaces/{namespace}/secrets", json={"metadata": {"name": "bad"}, **body}
    )
    status = response.json()
    assert response.status_code == code, status
    assert status["kind"] == "Status" and text in status["message"]
    if code == 422:
        assert status["reason"] == "Invalid" and status["details"]["causes"]


async def test_configmap_validation_and_immutability(
    core: client.CoreV1Api, namespace: str
) -> None:
    with pytest.raises(client.ApiException) as info:
        await core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "cm"}, "data": {"port": 3001}}
        )
    assert info.value.status == 400
    assert (
        "cannot unmarshal number into Go struct field ConfigMap.data of type string"
        in status_of(info.value)["message"]
    )
    with pytest.raises(client.ApiException) as info:
        await core.create_namespaced_config_map(
            namespace,
            {"metadata": {"name": "cm"}, "data": {"k": "v"}, "binaryData": {"k": b64("v")}},
        )
    assert "duplicate of key present in binaryData" in status_of(info.value)["message"]
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "frozen"}, "data": {"k": "v"}, "immutable": True}
    )
    with pytest.raises(client.ApiException) as info:
        await core.patch_namespaced_config_map("frozen", namespace, {"data": {"k": "w"}})
    assert info.value.status == 422
    assert "field is immutable when `immutable` is set" in status_of(info.value)["message"]
    await core.create_namespaced_secret(namespace, {"metadata": {"name": "typed"}, "data": {}})
    with pytest.raises(client.ApiException) as info:
        await core.patch_namespaced_secret("typed", namespace, {"type": "kubernetes.io/tls"})
    assert (
        'type: Invalid value: "kubernetes.io/tls": field is immutable'
        in status_of(info.value)["message"]
    )


async def test_secret_and_configmap_watch_with_selector(
    core: client.CoreV1Api, namespace: str
) -> None:
    listing = await core.list_namespaced_config_map(namespace)
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "skip", "labels": {"tier": "x"}}, "data": {"a": "1"}}
    )
    await core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "goose-config", "labels": {"tier": "agent"}}, "data": {"a": "1"}},
    )
    await core.patch_namespaced_config_map("goose-config", namespace, {"data": {"a": "2"}})
    seen: list[tuple[str, str, str]] = []
    async with watch.Watch() as w:
        async for event in w.stream(
            core.list_namespaced_config_map,
            namespace,
            label_selector="tier=agent",
            resource_version=listing.metadata.resource_version,
            timeout_seconds=2,
        ):
            raw = event["raw_object"]
            seen.append((event["type"], raw["metadata"]["name"], raw["data"]["a"]))
            if event["type"] == "MODIFIED":
                break
    assert seen == [("ADDED", "goose-config", "1"), ("MODIFIED", "goose-config", "2")]


async def test_namespace_deletion_removes_secrets_and_configmaps(core: client.CoreV1Api) -> None:
    name = "t-" + secrets.token_hex(4)
    await core.create_namespace({"metadata": {"name": name}})
    await core.create_namespaced_secret(name, {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    await core.create_namespaced_config_map(name, {"metadata": {"name": "c"}, "data": {"a": "b"}})
    await core.delete_namespace(name)
    async with asyncio.timeout(10):
        while True:
            try:
                await core.read_namespace(name)
            except client.ApiException as exc:
                assert exc.status == 404
                break
            await asyncio.sleep(0.05)
    assert (
        await core.list_secret_for_all_namespaces(field_selector=f"metadata.namespace={name}")
    ).items == []


async def test_namespaces_always_carry_their_name_label(
    core: client.CoreV1Api, namespace: str
) -> None:
    ns = await core.read_namespace(namespace)
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == namespace
    patched = await core.patch_namespace(
        namespace, {"metadata": {"labels": {"kubernetes.io/metadata.name": "other", "team": "a"}}}
    )
    assert patched.metadata.labels["kubernetes.io/metadata.name"] == namespace
    system = await core.read_namespace("kube-system")
    assert system.metadata.labels == {"kubernetes.io/metadata.name": "kube-system"}


# ============================================================== discovery


async def test_discovery_with_trailing_slash(
    http: httpx.AsyncClient, core: client.CoreV1Api
) -> None:
    for path in ("/api/v1", "/apis/apps/v1", "/apis/gateway.networking.k8s.io/v1", "/api", "/apis"):
        plain = await http.get(path)
        slash = await http.get(path + "/")
        assert plain.status_code == slash.status_code == 200, path
        assert plain.json() == slash.json()
    resources = await core.get_api_resources()  # the official client asks /api/v1/
    names = {r.name for r in resources.resources}
    assert {"secrets", "configmaps", "pods/log"} <= names
    autoscaling = (await http.get("/apis/autoscaling/v1")).json()
    assert any(r["name"] == "horizontalpodautoscalers" for r in autoscaling["resources"])
    openapi = (await http.get("/openapi/v3/api/v1")).json()
    secret_schema = openapi["components"]["schemas"]["io.k8s.api.core.v1.Secret"]
    assert {"data", "stringData", "type"} <= set(secret_schema["properties"])


@needs_kubectl
def test_kubectl_secrets_configmaps_and_api_resources(kubectl_env: dict[str, str]) -> None:
    ns = "k-" + secrets.token_hex(4)
    assert kubectl(kubectl_env, "create", "namespace", ns).returncode == 0
    try:
        resources = kubectl(kubectl_env, "api-resources")
        assert resources.returncode == 0 and resources.stderr == "", resources.stderr
        for kind in ("Secret", "ConfigMap", "HorizontalPodAutoscaler", "Gateway", "GatewayClass"):
            assert kind in resources.stdout
        made = kubectl(
            kubectl_env, "-n", ns, "create", "secret", "generic", "x", "--from-literal=a=b"
        )
        assert made.returncode == 0, made.stderr
        made = kubectl(
            kubectl_env, "-n", ns, "create", "configmap", "cfg", "--from-literal=config.yaml=x: 1"
        )
        assert made.returncode == 0, made.stderr
        manifest = (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: applied}\n"
            "stringData: {GOOSE_MODEL: m}\n---\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied-cm}\ndata: {k: v}\n"
        )
        for flags in ((), ("--server-side",)):
            out = kubectl(kubectl_env, "-n", ns, "apply", *flags, "-f", "-", stdin=manifest)
            assert out.returncode == 0, out.stderr
        listing = kubectl(kubectl_env, "-n", ns, "get", "secret,cm")
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.split()
        assert "secret/x" in lines and "Opaque" in lines and "configmap/cfg" in lines
        value = kubectl(kubectl_env, "-n", ns, "get", "secret", "x", "-o", "jsonpath={.data.a}")
        assert base64.b64decode(value.stdout) == b"b"
        bad = kubectl(
            kubectl_env,
            "-n",
            ns,
            "create",
            "-f",
            "-",
            stdin="apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata: {k: plain-text}\n",
        )
        assert bad.returncode != 0 and "illegal base64 data" in bad.stderr
    finally:
        kubectl(kubectl_env, "delete", "namespace", ns, "--wait=false")


# ============================================================== kubelet: environment


async def test_missing_secret_is_create_container_config_error_until_it_exists(
    sim: SimClusterThread,
    kube: Any,
    namespace: str,
    apply: Any,
    waits: Waits,
    agent_env: dict[str, str],
) -> None:
    await apply(agent_deployment("proj-env-api", env_from=[{"secretRef": {"name": "agent-env"}}]))
    pods = await waits.pods(
        "proj-env-api", lambda p: waiting(p).get("reason") == "CreateContainerConfigError"
    )
    assert waiting(pods)["message"] == 'secret "agent-env" not found'
    assert pods[0]["status"]["phase"] == "Pending"
    event = await waits.event("Failed", 'Error: secret "agent-env" not found')
    assert event["type"] == "Warning"
    assert event["involvedObject"]["fieldPath"] == "spec.containers{goose-api}"
    # retried with back-off: the Failed event repeats
    await waits.event("Failed", 'Error: secret "agent-env" not found')
    start = time.monotonic()
    await kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "agent-env"}, "stringData": agent_env}
    )
    pods = await waits.pods("proj-env-api", ready)
    assert time.monotonic() - start < 5
    launch = last_launch(sim, namespace, pods[0]["metadata"]["name"])
    for key, value in agent_env.items():
        assert launch.env[key] == value


async def test_environment_precedence_references_and_expansion(
    sim: SimClusterThread,
    kube: Any,
    namespace: str,
    apply: Any,
    waits: Waits,
    agent_env: dict[str, str],
) -> None:
    core = kube.core
    await core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "agent-env"}, "stringData": {**agent_env, "USER_ID": "from-secret"}},
    )
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "extra"}, "data": {"LEVEL": "debug", "MODE": "cm"}}
    )
    await core.create_namespaced_service(
        namespace,
        {"metadata": {"name": "proj-env-api"}, "spec": {"ports": [{"name": "http", "port": 3001}]}},
    )
    env = [
        {"name": "USER_ID", "value": "alice"},  # env overrides envFrom
        {"name": "MODE", "value": "plain"},
        {"name": "GREETING", "value": "hi $(USER_ID) $(MISSING) $$(USER_ID)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "extra", "key": "LEVEL"}}},
        {
            "name": "OPTIONAL_KEY",
            "valueFrom": {"secretKeyRef": {"name": "agent-env", "key": "NOPE", "optional": True}},
        },
        {
            "name": "OPTIONAL_CM",
            "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x", "optional": True}},
        },
    ]
    env_from = [
        {"secretRef": {"name": "agent-env"}},
        {"configMapRef": {"name": "extra"}, "prefix": "CFG_"},
        {"secretRef": {"name": "absent", "optional": True}},
    ]
    await apply(agent_deployment("proj-env-api", env=env, env_from=env_from, service_links=True))
    pods = await waits.pods("proj-env-api", ready)
    pod = pods[0]
    launched = last_launch(sim, namespace, pod["metadata"]["name"]).env
    assert launched["USER_ID"] == "alice"
    assert launched["MODE"] == "plain" and launched["CFG_MODE"] == "cm" and "LEVEL" not in launched
    assert launched["GREETING"] == "hi alice $(MISSING) $(USER_ID)"
    assert launched["POD_NAME"] == pod["metadata"]["name"]
    assert launched["POD_NS"] == namespace
    assert launched["POD_IP"] == pod["status"]["podIP"]
    assert launched["NODE"] == pod["spec"]["nodeName"]
    assert launched["FROM_CM"] == "debug"
    assert "OPTIONAL_KEY" not in launched and "OPTIONAL_CM" not in launched
    assert launched["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert launched["PROJ_ENV_API_SERVICE_PORT"] == "3001"
    assert launched["PROJ_ENV_API_PORT"].startswith("tcp://10.96.")
    assert launched["HOSTNAME"] == pod["metadata"]["name"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "agent-env", "key": "NOPE"}}}],
            "couldn't find key NOPE in Secret {ns}/agent-env",
        ),
        (
            [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "nocm", "key": "a"}}}],
            'configmap "nocm" not found',
        ),
        (
            [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "NOPE"}}}],
            "couldn't find key NOPE in ConfigMap {ns}/cm",
        ),
        (
            [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "nosecret", "key": "a"}}}],
            'secret "nosecret" not found',
        ),
    ],
)
async def test_missing_references_have_the_kubelets_messages(
    kube: Any,
    namespace: str,
    apply: Any,
    waits: Waits,
    agent_env: dict[str, str],
    env: list[Obj],
    message: str,
) -> None:
    await kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "agent-env"}, "stringData": agent_env}
    )
    await kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    )
    await apply(
        agent_deployment("proj-ref-api", env=env, env_from=[{"secretRef": {"name": "agent-env"}}])
    )
    expected = message.format(ns=namespace)
    pods = await waits.pods("proj-ref-api", lambda p: waiting(p).get("message") == expected)
    assert waiting(pods)["reason"] == "CreateContainerConfigError"
    await waits.event("Failed", f"Error: {expected}")


async def test_env_value_must_be_a_string(apps: client.AppsV1Api, namespace: str) -> None:
    body = agent_deployment("proj-num-api", env=[{"name": "PORT", "value": 3001}])  # type: ignore[dict-item]
    with pytest.raises(client.ApiException) as info:
        await apps.create_namespaced_deployment(namespace, body)
    assert info.value.status == 400
    assert "cannot unmarshal number into Go struct field EnvVar" in status_of(info.value)["message"]


# ============================================================== kubelet: volumes


async def test_configmap_and_secret_volumes(
    sim: SimClusterThread,
    kube: Any,
    namespace: str,
    apply: Any,
    waits: Waits,
    agent_env: dict[str, str],
) -> None:
    volumes = [
        {"name": "goose-config", "configMap": {"name": "goose-config"}},
        {
            "name": "picked",
            "configMap": {
                "name": "goose-config",
                "items": [{"key": "b.txt", "path": "sub/renamed"}],
            },
        },
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "maybe", "secret": {"secretName": "absent", "optional": True}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [
        {"name": "tmp", "mountPath": "/tmp"},
        {
            "name": "goose-config",
            "mountPath": "/tmp/.config/goose/config.yaml",
            "subPath": "config.yaml",
        },
        {"name": "goose-config", "mountPath": "/etc/goose"},
        {"name": "picked", "mountPath": "/etc/picked"},
        {"name": "creds", "mountPath": "/var/run/creds", "readOnly": True},
        {"name": "maybe", "mountPath": "/var/run/maybe"},
    ]
    await apply(
        agent_deployment("proj-vol-api", env=plain_env(agent_env), volumes=volumes, mounts=mounts)
    )
    pods = await waits.pods(
        "proj-vol-api", lambda p: bool(p) and p[0].get("spec", {}).get("nodeName")
    )
    event = await waits.event("FailedMount", 'configmap "goose-config" not found')
    assert event["message"] == (
        'MountVolume.SetUp failed for volume "goose-config" : configmap "goose-config" not found'
    )
    pods = await waits.pods(
        "proj-vol-api", lambda p: waiting(p).get("reason") == "ContainerCreating"
    )
    assert pods[0]["status"]["phase"] == "Pending"
    await kube.core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "goose-config"},
            "data": {"config.yaml": "GOOSE_MODEL: m\n", "b.txt": "B"},
        },
    )
    await waits.event("FailedMount", 'secret "creds" not found')
    await kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}}
    )
    pods = await waits.pods("proj-vol-api", ready)
    files = last_launch(sim, namespace, pods[0]["metadata"]["name"]).files
    assert files == {
        "/tmp/.config/goose/config.yaml": "GOOSE_MODEL: m\n",
        "/etc/goose/config.yaml": "GOOSE_MODEL: m\n",
        "/etc/goose/b.txt": "B",
        "/etc/picked/sub/renamed": "B",
        "/var/run/creds/token": "s3cr3t",
    }


async def test_volume_item_key_and_subpath_must_exist(
    kube: Any, namespace: str, apply: Any, waits: Waits, agent_env: dict[str, str]
) -> None:
    await kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "goose-config"}, "data": {"other.yaml": "x"}}
    )
    volumes = [{"name": "cfg", "configMap": {"name": "goose-config"}}]
    mounts = [
        {"name": "cfg", "mountPath": "/tmp/.config/goose/config.yaml", "subPath": "config.yaml"}
    ]
    await apply(
        agent_deployment("proj-sub-api", env=plain_env(agent_env), volumes=volumes, mounts=mounts)
    )
    pods = await waits.pods(
        "proj-sub-api", lambda p: waiting(p).get("reason") == "CreateContainerConfigError"
    )
    assert waiting(pods)["message"] == (
        'failed to prepare subPath for volumeMount "cfg" of container "goose-api"'
    )
    picked = [
        {
            "name": "cfg",
            "configMap": {"name": "goose-config", "items": [{"key": "config.yaml", "path": "c"}]},
        }
    ]
    await apply(
        agent_deployment("proj-item-api", env=plain_env(agent_env), volumes=picked, mounts=[])
    )
    await waits.event(
        "FailedMount",
        'MountVolume.SetUp failed for volume "cfg" : configmap references non-existent config '
        "key: config.yaml",
    )
    await kube.core.patch_namespaced_config_map(
        "goose-config", namespace, {"data": {"config.yaml": "y"}}
    )
    await waits.pods("proj-item-api", ready)
    await waits.pods("proj-sub-api", ready)  # retried: the key exists now


# ============================================================== agent exits: CrashLoopBackOff


async def test_agent_exit_crash_loops_until_its_secret_is_fixed(
    sim: SimClusterThread,
    kube: Any,
    namespace: str,
    apply: Any,
    waits: Waits,
    http: httpx.AsyncClient,
    agent_env: dict[str, str],
) -> None:
    incomplete = {k: v for k, v in agent_env.items() if k != "MONGODB_URL"}
    await kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "agent-env"}, "stringData": incomplete}
    )
    await apply(agent_deployment("proj-exit-api", env_from=[{"secretRef": {"name": "agent-env"}}]))
    pods = await waits.pods(
        "proj-exit-api",
        lambda p: (
            waiting(p).get("reason") == "CrashLoopBackOff"
            and container_status(p).get("restartCount", 0) >= 2
        ),
    )
    cs = container_status(pods)
    terminated = cs["lastState"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
    assert terminated["containerID"].startswith("containerd://")
    assert terminated["startedAt"] and terminated["finishedAt"]
    assert pods[0]["status"]["phase"] == "Running" and cs["ready"] is False
    assert "back-off" in waiting(pods)["message"]
    await waits.event("BackOff", "Back-off restarting failed container goose-api")
    name = pods[0]["metadata"]["name"]
    previous = await http.get(
        f"/api/v1/namespaces/{namespace}/pods/{name}/log", params={"previous": "true"}
    )
    assert previous.status_code == 200
    assert "MONGODB_URL" in previous.text  # the agent says why it exits
    # a crash-looping container's log (without --previous) is the last terminated one
    current = await http.get(f"/api/v1/namespaces/{namespace}/pods/{name}/log")
    assert current.status_code == 200 and "MONGODB_URL" in current.text
    # fixing the Secret: the next restart re-resolves the environment and succeeds
    await kube.core.patch_namespaced_secret(
        "agent-env", namespace, {"stringData": {"MONGODB_URL": agent_env["MONGODB_URL"]}}
    )
    pods = await waits.pods("proj-exit-api", ready, within=20)
    cs = container_status(pods)
    assert cs["restartCount"] >= 2 and cs["lastState"]["terminated"]["exitCode"] == 1
    assert last_launch(sim, namespace, name).env["MONGODB_URL"] == agent_env["MONGODB_URL"]


@pytest.mark.parametrize(
    ("tag", "reason", "code"), [("crash", "Error", 1), ("oom", "OOMKilled", 137)]
)
async def test_image_tag_crash_faults_still_crash_loop(
    namespace: str,
    apply: Any,
    waits: Waits,
    agent_env: dict[str, str],
    tag: str,
    reason: str,
    code: int,
) -> None:
    await apply(
        agent_deployment("proj-tag-api", env=plain_env(agent_env), image=f"goose-api:{tag}")
    )
    pods = await waits.pods(
        "proj-tag-api",
        lambda p: (
            waiting(p).get("reason") == "CrashLoopBackOff"
            and container_status(p).get("restartCount", 0) >= 2
        ),
    )
    terminated = container_status(pods)["lastState"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == (reason, code)


# ============================================================== pod logs


def log_url(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}/log"


async def test_log_errors_of_containers_that_did_not_start(
    kube: Any, namespace: str, apply: Any, waits: Waits, http: httpx.AsyncClient
) -> None:
    await apply(agent_deployment("proj-wait-api", env_from=[{"secretRef": {"name": "absent"}}]))
    pods = await waits.pods(
        "proj-wait-api", lambda p: waiting(p).get("reason") == "CreateContainerConfigError"
    )
    name = pods[0]["metadata"]["name"]
    response = await http.get(log_url(namespace, name))
    assert response.status_code == 400
    body = response.json()
    assert body["reason"] == "BadRequest"
    assert body["message"] == (
        f'container "goose-api" in pod "{name}" is waiting to start: CreateContainerConfigError'
    )
    response = await http.get(log_url(namespace, name), params={"previous": "true"})
    assert response.json()["message"] == (
        f'previous terminated container "goose-api" in pod "{name}" not found'
    )
    response = await http.get(log_url(namespace, name), params={"container": "sidecar"})
    assert (response.status_code, response.json()["message"]) == (
        400,
        f"container sidecar is not valid for pod {name}",
    )
    response = await http.get(log_url(namespace, name), params={"tailLines": "-1"})
    assert response.status_code == 422 and response.json()["reason"] == "Invalid"
    response = await http.get(
        log_url(namespace, name), params={"sinceSeconds": "5", "sinceTime": "2026-01-01T00:00:00Z"}
    )
    assert response.status_code == 422
    # volumes not set up yet: ContainerCreating
    await apply(
        agent_deployment(
            "proj-mount-api",
            volumes=[{"name": "cfg", "configMap": {"name": "absent"}}],
            mounts=[{"name": "cfg", "mountPath": "/etc/cfg"}],
        )
    )
    pods = await waits.pods(
        "proj-mount-api", lambda p: waiting(p).get("reason") == "ContainerCreating"
    )
    await waits.event("FailedMount", 'configmap "absent" not found')
    name = pods[0]["metadata"]["name"]
    response = await http.get(log_url(namespace, name))
    assert response.json()["message"] == (
        f'container "goose-api" in pod "{name}" is waiting to start: ContainerCreating'
    )
    with pytest.raises(client.ApiException) as info:
        await kube.core.read_namespaced_pod_log("nope", namespace)
    assert info.value.status == 404


async def test_log_options_and_follow(
    namespace: str,
    apply: Any,
    waits: Waits,
    http: httpx.AsyncClient,
    agent_env: dict[str, str],
    kube: Any,
) -> None:
    await apply(agent_deployment("proj-log-api", env=plain_env(agent_env)))
    await kube.apply_service(namespace, "proj-log-api")
    pods = await waits.pods("proj-log-api", ready)
    name = pods[0]["metadata"]["name"]
    url = log_url(namespace, name)
    full = (await http.get(url)).text
    lines = full.splitlines()
    assert len(lines) >= 5 and full.endswith("\n")
    assert "MONGODB_URL" in full  # stored as the agent writes it: redaction is the console's job
    assert (await http.get(url, params={"tailLines": "2"})).text.splitlines() == lines[-2:]
    assert (await http.get(url, params={"tailLines": "0"})).text == ""
    assert (await http.get(url, params={"limitBytes": "10"})).text == full[:10]
    stamped = (await http.get(url, params={"timestamps": "true", "tailLines": "1"})).text
    stamp, _, rest = stamped.rstrip("\n").partition(" ")
    assert rest == lines[-1]
    assert len(stamp) == len("2026-01-01T00:00:00.000000000Z") and stamp.endswith("Z")
    future = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await http.get(url, params={"sinceTime": future})).text == ""
    assert (await http.get(url, params={"sinceSeconds": "3600"})).text == full
    # kubernetes-asyncio reads the same
    assert (
        await kube.core.read_namespaced_pod_log(name, namespace, tail_lines=2)
        == "\n".join(lines[-2:]) + "\n"
    )

    # follow: new lines arrive while the container runs; the stream ends when it stops
    base = f"/api/v1/namespaces/{namespace}/services/proj-log-api:3001/proxy"
    received: list[str] = []
    async with http.stream(
        "GET", url, params={"follow": "true", "tailLines": "0"}, timeout=20
    ) as stream:
        assert stream.status_code == 200
        chunks = stream.aiter_text()
        created = await http.post(base + "/api/v1/sessions")
        assert created.status_code == 201
        session_id = created.json()["session_id"]
        async with asyncio.timeout(10):
            while not any(session_id in line for line in received):
                received.append(await anext(chunks))
        await kube.apps.patch_namespaced_deployment_scale(
            "proj-log-api", namespace, {"spec": {"replicas": 0}}
        )
        async with asyncio.timeout(10):
            async for chunk in chunks:  # ends when the container instance ends
                received.append(chunk)
    assert any(session_id in chunk for chunk in received)


@needs_kubectl
async def test_kubectl_logs_previous_and_follow(
    kubectl_env: dict[str, str],
    namespace: str,
    apply: Any,
    waits: Waits,
    agent_env: dict[str, str],
    kube: Any,
) -> None:
    incomplete = {k: v for k, v in agent_env.items() if k != "GOOSE_PROVIDER"}
    await kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "agent-env"}, "stringData": incomplete}
    )
    await apply(agent_deployment("proj-klog-api", env_from=[{"secretRef": {"name": "agent-env"}}]))
    pods = await waits.pods(
        "proj-klog-api", lambda p: container_status(p).get("restartCount", 0) >= 1
    )
    name = pods[0]["metadata"]["name"]
    previous = await asyncio.to_thread(
        kubectl, kubectl_env, "-n", namespace, "logs", "--previous", name
    )
    assert previous.returncode == 0, previous.stderr
    assert "provider" in previous.stdout.lower()
    # -f on a crashing container ends with that instance
    followed = await asyncio.to_thread(kubectl, kubectl_env, "-n", namespace, "logs", "-f", name)
    assert followed.returncode == 0, followed.stderr
    await kube.core.patch_namespaced_secret(
        "agent-env", namespace, {"stringData": {"GOOSE_PROVIDER": agent_env["GOOSE_PROVIDER"]}}
    )
    await waits.pods("proj-klog-api", ready, within=20)
    current = await asyncio.to_thread(
        kubectl, kubectl_env, "-n", namespace, "logs", "deploy/proj-klog-api"
    )
    assert current.returncode == 0 and "MongoDB" in current.stdout


# ============================================================== service proxy and NetworkPolicy


@pytest.fixture
def fast_dial(sim: SimClusterThread) -> Iterator[float]:
    """The API server's 30 s dial timeout shortened for the test (restored afterwards)."""
    sim.set_delays(proxy_dial_timeout=0.5)
    yield 0.5
    sim.set_delays(proxy_dial_timeout=30.0)
    sim.set_proxy_source("kube-system")


@pytest.fixture
async def agent_project(
    kube: Any, namespace: str, apply: Any, waits: Waits, agent_env: dict[str, str]
) -> str:
    """A Ready agent with a Service; returns its proxy base path."""
    await apply(agent_deployment("proj-np-api", env=plain_env(agent_env)))
    await kube.apply_service(namespace, "proj-np-api")
    await waits.pods("proj-np-api", ready)
    return f"/api/v1/namespaces/{namespace}/services/proj-np-api:3001/proxy"


def policy(
    name: str,
    ingress: list[Obj] | None,
    selector: Obj | None = None,
    types: list[str] | None = None,
) -> Obj:
    spec: Obj = {
        "podSelector": selector if selector is not None else {"matchLabels": {"app": "goose"}}
    }
    if ingress is not None:
        spec["ingress"] = ingress
    if types is not None:
        spec["policyTypes"] = types
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def from_namespaces(*names: str, port: Any = 3001) -> list[Obj]:
    """The console's policy shape (k8s_manifests/networkpolicy.yaml.j2)."""
    return [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": list(names),
                            }
                        ]
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": port}],
        }
    ]


async def test_proxy_passes_every_method_query_and_body(
    http: httpx.AsyncClient, agent_project: str
) -> None:
    base = agent_project
    created = await http.post(base + "/api/v1/sessions", params={"probe": "1"})
    assert created.status_code == 201, created.text
    session_id = created.json()["session_id"]
    got = await http.get(base + f"/api/v1/sessions/{session_id}", params={"x": "y"})
    assert got.status_code == 200 and got.json()["session_id"] == session_id
    head = await http.head(base + "/api/v1/health")
    # whatever the agent answers reaches the client (a HEAD response never has a body)
    assert head.content == b"" and head.status_code == 200
    options = await http.options(
        base + "/api/v1/health",
        headers={"Origin": "http://ui.example", "Access-Control-Request-Method": "GET"},
    )
    # the agent's CORS preflight answer, headers passed through
    assert options.status_code == 200
    assert options.headers["access-control-allow-methods"] == "*"
    for method in ("PUT", "PATCH"):
        answer = await http.request(method, base + f"/api/v1/sessions/{session_id}", json={"a": 1})
        # the agent answers (axum's empty 405), not the API server (its errors are Status)
        assert answer.status_code == 405 and answer.content == b"", answer.text
    async with http.stream(
        "POST", base + f"/api/v1/sessions/{session_id}/messages", json={"message": "hello"}
    ) as stream:
        assert stream.status_code == 200
        body = b"".join([chunk async for chunk in stream.aiter_bytes()])
    assert b'"type":"complete"' in body.replace(b" ", b"")
    deleted = await http.delete(base + f"/api/v1/sessions/{session_id}")
    assert deleted.status_code == 204


async def test_proxy_passes_a_large_body(http: httpx.AsyncClient, agent_project: str) -> None:
    base = agent_project
    session_id = (await http.post(base + "/api/v1/sessions")).json()["session_id"]
    # 1.5 MiB: under the agent's 2 MiB limit, over what aiohttp sends as raw bytes unwarned
    sent = await http.post(
        base + f"/api/v1/sessions/{session_id}/send", json={"message": "x" * 1_500_000}
    )
    assert sent.status_code == 200, sent.text[:200]


async def test_network_policy_drops_proxy_traffic_from_kube_system(
    sim: SimClusterThread,
    kube: Any,
    namespace: str,
    http: httpx.AsyncClient,
    agent_project: str,
    fast_dial: float,
) -> None:
    net = client.NetworkingV1Api(kube.core.api_client)
    health = agent_project + "/api/v1/health"
    assert (await http.get(health)).status_code == 200  # no policy: admitted
    # the console's policy without kube-system: the konnectivity agent's traffic is dropped
    await net.create_namespaced_network_policy(
        namespace, policy("console", from_namespaces("gooseui"))
    )
    with pytest.raises(httpx.ReadTimeout):
        await http.get(health, timeout=0.2)  # no answer at all while the dial hangs
    started = time.monotonic()
    answer = await http.get(health, timeout=5)
    assert time.monotonic() - started >= fast_dial * 0.9
    assert answer.status_code == 503
    pods = (await kube.core.list_namespaced_pod(namespace, label_selector="app=goose")).items
    assert answer.json()["message"] == (
        f"error trying to reach service: dial tcp {pods[0].status.pod_ip}:3001: i/o timeout"
    )
    # adding kube-system to the allowed namespaces takes effect for the next request
    await net.patch_namespaced_network_policy(
        "console", namespace, {"spec": {"ingress": from_namespaces("gooseui", "kube-system")}}
    )
    assert (await http.get(health)).status_code == 200
    # named port and port ranges
    await net.patch_namespaced_network_policy(
        "console", namespace, {"spec": {"ingress": from_namespaces("kube-system", port="http")}}
    )
    assert (await http.get(health)).status_code == 200
    await net.patch_namespaced_network_policy(
        "console", namespace, {"spec": {"ingress": [{"ports": [{"port": 3000, "endPort": 3002}]}]}}
    )
    assert (await http.get(health)).status_code == 200
    await net.patch_namespaced_network_policy(
        "console", namespace, {"spec": {"ingress": [{"ports": [{"port": 8080}]}]}}
    )
    assert (await http.get(health, timeout=5)).status_code == 503
    # a policy that does not select the pod does not isolate it
    await net.delete_namespaced_network_policy("console", namespace)
    await net.create_namespaced_network_policy(
        namespace, policy("other", [], selector={"matchLabels": {"app": "else"}})
    )
    assert (await http.get(health)).status_code == 200
    # an empty ingress list on a selecting policy: deny everything
    await net.create_namespaced_network_policy(namespace, policy("deny", None, selector={}))
    assert (await http.get(health, timeout=5)).status_code == 503
    # the pod proxy crosses the same dataplane
    answer = await http.get(
        f"/api/v1/namespaces/{namespace}/pods/{pods[0].metadata.name}:3001/proxy/api/v1/health",
        timeout=5,
    )
    assert answer.status_code == 503


async def test_network_policy_with_the_api_server_as_an_ip(
    sim: SimClusterThread,
    kube: Any,
    namespace: str,
    http: httpx.AsyncClient,
    agent_project: str,
    fast_dial: float,
) -> None:
    net = client.NetworkingV1Api(kube.core.api_client)
    health = agent_project + "/api/v1/health"
    await net.create_namespaced_network_policy(
        namespace, policy("console", from_namespaces("kube-system"))
    )
    assert (await http.get(health)).status_code == 200
    sim.set_proxy_source(ip="10.224.0.4")
    assert sim.proxy_source == TrafficSource("10.224.0.4")
    assert (
        await http.get(health, timeout=5)
    ).status_code == 503  # not a pod: selectors never match
    ingress = [{"from": [{"ipBlock": {"cidr": "10.224.0.0/16"}}], "ports": [{"port": 3001}]}]
    await net.patch_namespaced_network_policy("console", namespace, {"spec": {"ingress": ingress}})
    assert (await http.get(health)).status_code == 200
    ingress[0]["from"][0]["ipBlock"]["except"] = ["10.224.0.0/24"]
    await net.patch_namespaced_network_policy("console", namespace, {"spec": {"ingress": ingress}})
    assert (await http.get(health, timeout=5)).status_code == 503
    sim.set_proxy_source("kube-system")
    assert (await http.get(health, timeout=5)).status_code == 503  # a pod IP, outside the block
    with pytest.raises(ValueError):
        sim.set_proxy_source("x", ip="1.2.3.4")


async def test_readiness_probes_are_not_subject_to_network_policy(
    kube: Any, namespace: str, apply: Any, waits: Waits, agent_env: dict[str, str]
) -> None:
    net = client.NetworkingV1Api(kube.core.api_client)
    await net.create_namespaced_network_policy(namespace, policy("deny-all", None, selector={}))
    await apply(agent_deployment("proj-probe-api", env=plain_env(agent_env)))
    await waits.pods("proj-probe-api", ready)


async def test_network_policy_defaults_and_validation(kube: Any, namespace: str) -> None:
    net = client.NetworkingV1Api(kube.core.api_client)
    made = await net.create_namespaced_network_policy(
        namespace, policy("p", [{"ports": [{"port": 3001}]}], types=None)
    )
    assert made.spec.policy_types == ["Ingress"]
    assert made.spec.ingress[0].ports[0].protocol == "TCP"
    bad = [
        ([{"from": [{}]}], "spec.ingress[0].from[0]: Required value: must specify a peer"),
        (
            [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}],
            "must be a strict subset of `cidr`",
        ),
        ([{"from": [{"ipBlock": {"cidr": "nonsense"}}]}], "must be a valid CIDR value"),
        (
            [{"ports": [{"port": "http", "endPort": 3002}]}],
            "may not be specified when `port` is non-numeric",
        ),
        ([{"ports": [{"port": 3005, "endPort": 3002}]}], "must be greater than or equal to `port`"),
    ]
    for ingress, message in bad:
        with pytest.raises(client.ApiException) as info:
            await net.create_namespaced_network_policy(namespace, policy("bad", ingress))
        assert info.value.status == 422
        assert message in status_of(info.value)["message"]


def _pod(ns: str, labels: dict[str, str]) -> Obj:
    return {
        "metadata": {"namespace": ns, "name": "p", "labels": labels},
        "spec": {
            "containers": [{"ports": [{"name": "http", "containerPort": 3001, "protocol": "TCP"}]}]
        },
    }


def _np(
    ns: str, ingress: list[Obj] | None, types: list[str] | None = None, selector: Obj | None = None
) -> Obj:
    spec: Obj = {"podSelector": selector or {}, "policyTypes": types or ["Ingress"]}
    if ingress is not None:
        spec["ingress"] = ingress
    return {"metadata": {"namespace": ns, "name": "np"}, "spec": spec}


def test_network_policy_semantics() -> None:
    """The NetworkPolicy rules as Kubernetes defines them (the dataplane's decision)."""
    pod = _pod("user", {"app": "goose"})
    konnectivity = source_from("kube-system")
    system_labels = {"kubernetes.io/metadata.name": "kube-system"}
    host = source_from(None, "10.224.0.4")
    same_ns_pod = TrafficSource("10.244.0.9", "user", {"role": "console"})

    def ok(
        policies: list[Obj],
        source: TrafficSource = konnectivity,
        labels: dict[str, str] | None = None,
        port: int = 3001,
    ) -> bool:
        ns_labels = (
            labels
            if labels is not None
            else ({"kubernetes.io/metadata.name": source.namespace} if source.namespace else {})
        )
        return admits(policies, pod, port, source, ns_labels)

    assert ok([])
    assert ok([_np("user", None, types=["Egress"])])  # egress-only does not isolate ingress
    assert not ok([_np("user", None)])  # selected, no rules: deny
    assert ok([_np("user", [{}])])  # one empty rule: everything
    assert ok([_np("user", [{"from": []}])])
    # podSelector alone selects pods of the policy's own namespace only
    by_pod = [_np("user", [{"from": [{"podSelector": {"matchLabels": {"role": "console"}}}]}])]
    assert ok(by_pod, same_ns_pod)
    assert not ok(by_pod, TrafficSource("10.244.0.9", "other", {"role": "console"}))
    # namespaceSelector AND podSelector in one peer; two peers are OR
    both = [
        {
            "namespaceSelector": {"matchLabels": system_labels},
            "podSelector": {"matchLabels": {"k8s-app": "konnectivity-agent"}},
        }
    ]
    assert ok([_np("user", [{"from": both}])], konnectivity, system_labels)
    wrong_pod = [
        {
            "namespaceSelector": {"matchLabels": system_labels},
            "podSelector": {"matchLabels": {"k8s-app": "x"}},
        }
    ]
    assert not ok([_np("user", [{"from": wrong_pod}])], konnectivity, system_labels)
    assert ok(
        [_np("user", [{"from": [*wrong_pod, {"namespaceSelector": {}}]}])],
        konnectivity,
        system_labels,
    )
    # a host address never matches selectors, only ipBlock
    assert not ok([_np("user", [{"from": [{"namespaceSelector": {}}]}])], host)
    assert ok([_np("user", [{"from": [{"ipBlock": {"cidr": "10.224.0.4/32"}}]}])], host)
    assert ok(
        [_np("user", [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16"}}]}])],
        konnectivity,
        system_labels,
    )
    # ports: protocol, named, ranges; a second policy adds to the first
    assert not ok([_np("user", [{"ports": [{"port": 3001, "protocol": "UDP"}]}])])
    assert ok([_np("user", [{"ports": [{"port": "http", "protocol": "TCP"}]}])])
    assert not ok([_np("user", [{"ports": [{"port": "metrics", "protocol": "TCP"}]}])])
    assert ok([_np("user", [{"ports": [{"protocol": "TCP"}]}])])
    assert ok(
        [
            _np("user", None),
            _np("user", [{"ports": [{"port": 3000, "endPort": 3001, "protocol": "TCP"}]}]),
        ]
    )
    # a policy whose podSelector does not match leaves the pod open
    assert ok([_np("user", None, selector={"matchLabels": {"app": "else"}})])


# ============================================================== Gateway API


def gateway(name: str, listeners: list[Obj], class_name: str = CLASS) -> Obj:
    return {
        "apiVersion": f"{GW_GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {"gatewayClassName": class_name, "listeners": listeners},
    }


def route(
    name: str, parents: list[Obj], hostnames: list[str] | None = None, backend: str = "proj-gw-api"
) -> Obj:
    spec: Obj = {
        "parentRefs": parents,
        "rules": [{"backendRefs": [{"name": backend, "port": 3001}]}],
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": f"{GW_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": spec,
    }


def condition(obj: Obj, kind: str, parent: int = 0) -> Obj:
    if obj.get("kind") == "HTTPRoute":
        conditions = obj["status"]["parents"][parent]["conditions"]
    else:
        conditions = obj["status"]["conditions"]
    return next(c for c in conditions if c["type"] == kind)


def has_parents(route_obj: Obj) -> bool:
    return bool((route_obj.get("status") or {}).get("parents"))


@pytest.fixture
def custom(kube: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.core.api_client)


@pytest.fixture
async def second_namespace(core: client.CoreV1Api) -> AsyncIterator[str]:
    name = "t-" + secrets.token_hex(4)
    await core.create_namespace({"metadata": {"name": name}})
    yield name
    await core.delete_namespace(name)


async def test_gateway_and_route_status(
    custom: client.CustomObjectsApi, kube: Any, namespace: str, waits: Waits
) -> None:
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "gateways",
        gateway(
            "edge",
            [{"name": "http", "protocol": "HTTP", "port": 80, "hostname": "*.apps.example.com"}],
        ),
    )
    gw = await waits.custom_object(
        "gateways", "edge", lambda o: condition(o, "Programmed")["status"] == "True"
    )
    assert condition(gw, "Accepted")["reason"] == "Accepted"
    assert condition(gw, "Accepted")["observedGeneration"] == gw["metadata"]["generation"]
    assert gw["status"]["addresses"][0]["type"] == "IPAddress"
    assert gw["spec"]["listeners"][0]["allowedRoutes"] == {
        "namespaces": {"from": "Same"}
    }  # defaulted
    # the route's backend does not exist yet: accepted, refs unresolved
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "httproutes",
        route("r", [{"name": "edge"}], ["proj-gw.apps.example.com"]),
    )
    found = await waits.custom_object("httproutes", "r", has_parents)
    (parent,) = found["status"]["parents"]
    assert parent["controllerName"] == CONTROLLER
    assert parent["parentRef"] == {"group": GW_GROUP, "kind": "Gateway", "name": "edge"}
    assert (condition(found, "Accepted")["status"], condition(found, "Accepted")["reason"]) == (
        "True",
        "Accepted",
    )
    resolved = condition(found, "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
    assert f"{namespace}/proj-gw-api" in resolved["message"]
    assert resolved["observedGeneration"] == found["metadata"]["generation"]
    # a Service appears: re-evaluated
    await kube.apply_service(namespace, "proj-gw-api")
    found = await waits.custom_object(
        "httproutes",
        "r",
        lambda o: has_parents(o) and condition(o, "ResolvedRefs")["status"] == "True",
    )
    assert condition(found, "ResolvedRefs")["reason"] == "ResolvedRefs"
    gw = await waits.custom_object(
        "gateways",
        "edge",
        lambda o: (o["status"].get("listeners") or [{}])[0].get("attachedRoutes") == 1,
    )
    assert gw["status"]["listeners"][0]["supportedKinds"] == [
        {"group": GW_GROUP, "kind": "HTTPRoute"}
    ]
    # hostnames that do not intersect, a sectionName no listener has
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "httproutes",
        route("far", [{"name": "edge"}], ["proj.other.example"]),
    )
    far = await waits.custom_object("httproutes", "far", has_parents)
    assert (condition(far, "Accepted")["status"], condition(far, "Accepted")["reason"]) == (
        "False",
        "NoMatchingListenerHostname",
    )
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "httproutes",
        route("sect", [{"name": "edge", "sectionName": "https"}]),
    )
    sect = await waits.custom_object("httproutes", "sect", has_parents)
    assert condition(sect, "Accepted")["reason"] == "NoMatchingParent"
    # a route whose Gateway does not exist: nobody writes its status; with one existing and
    # one missing parent only the existing one gets an entry
    await custom.create_namespaced_custom_object(
        GW_GROUP, "v1", namespace, "httproutes", route("orphan", [{"name": "nowhere"}])
    )
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "httproutes",
        route("two", [{"name": "nowhere"}, {"name": "edge"}]),
    )
    two = await waits.custom_object("httproutes", "two", has_parents)
    assert [p["parentRef"]["name"] for p in two["status"]["parents"]] == ["edge"]
    orphan = await custom.get_namespaced_custom_object(
        GW_GROUP, "v1", namespace, "httproutes", "orphan"
    )
    assert not has_parents(orphan)
    # deleting the Gateway removes our entry; the route then has no status
    await custom.delete_namespaced_custom_object(GW_GROUP, "v1", namespace, "gateways", "edge")
    await waits.custom_object("httproutes", "r", lambda o: not has_parents(o))


async def test_route_namespaces_allowed_by_listeners(
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
    second_namespace: str,
    waits: Waits,
) -> None:
    listener = {"name": "http", "protocol": "HTTP", "port": 80}
    await custom.create_namespaced_custom_object(
        GW_GROUP, "v1", namespace, "gateways", gateway("shared", [listener])
    )
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        second_namespace,
        "httproutes",
        route("r", [{"name": "shared", "namespace": namespace}]),
    )
    found = await waits.custom_object("httproutes", "r", has_parents, ns=second_namespace)
    accepted = condition(found, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "NotAllowedByListeners")
    # a Selector listener admits the namespace once it carries the label
    selector = {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {"gateway-access": "yes"}}}
    }
    await custom.patch_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "gateways",
        "shared",
        [{"op": "replace", "path": "/spec/listeners/0/allowedRoutes", "value": selector}],
    )
    await core.patch_namespace(
        second_namespace, {"metadata": {"labels": {"gateway-access": "yes"}}}
    )
    found = await waits.custom_object(
        "httproutes",
        "r",
        lambda o: has_parents(o) and condition(o, "Accepted")["status"] == "True",
        ns=second_namespace,
    )
    # the backend is in the route's own namespace; it does not exist
    assert condition(found, "ResolvedRefs")["reason"] == "BackendNotFound"


async def test_gateway_of_an_unknown_class_stays_pending(
    custom: client.CustomObjectsApi, namespace: str, waits: Waits
) -> None:
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "gateways",
        gateway("foreign", [{"name": "http", "protocol": "HTTP", "port": 80}], class_name="istio"),
    )
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "gateways",
        gateway("ours", [{"name": "http", "protocol": "HTTP", "port": 80}]),
    )
    await waits.custom_object(
        "gateways", "ours", lambda o: condition(o, "Programmed")["status"] == "True"
    )
    foreign = await custom.get_namespaced_custom_object(
        GW_GROUP, "v1", namespace, "gateways", "foreign"
    )
    pending = condition(foreign, "Accepted")
    assert (pending["status"], pending["reason"], pending["message"]) == (
        "Unknown",
        "Pending",
        "Waiting for controller",
    )
    classes = await custom.list_cluster_custom_object(GW_GROUP, "v1", "gatewayclasses")
    ours = next(c for c in classes["items"] if c["metadata"]["name"] == CLASS)
    assert ours["spec"]["controllerName"] == CONTROLLER
    assert condition(ours, "Accepted")["status"] == "True"


async def test_gateway_api_validation(custom: client.CustomObjectsApi, namespace: str) -> None:
    bad = [
        (
            "gateways",
            gateway(
                "g",
                [
                    {"name": "a", "protocol": "HTTP", "port": 80},
                    {"name": "a", "protocol": "HTTP", "port": 81},
                ],
            ),
            "Duplicate value",
        ),
        ("gateways", gateway("g", []), "spec.listeners: Required value"),
        (
            "gateways",
            gateway("g", [{"name": "a", "protocol": "HTTPS", "port": 443}]),
            "tls must be specified",
        ),
        (
            "httproutes",
            {
                **route("r", [{"name": "g"}]),
                "spec": {
                    "parentRefs": [{"name": "g"}],
                    "rules": [{"backendRefs": [{"name": "svc"}]}],
                },
            },
            "Must have port for Service reference",
        ),
        ("httproutes", route("r", [{"name": "g"}], ["Not_A_Host"]), "spec.hostnames[0]"),
    ]
    for plural, body, message in bad:
        with pytest.raises(client.ApiException) as info:
            await custom.create_namespaced_custom_object(GW_GROUP, "v1", namespace, plural, body)
        assert info.value.status == 422, body
        assert message in status_of(info.value)["message"]


@needs_kubectl
async def test_kubectl_gets_gateway_api_objects(
    kubectl_env: dict[str, str], custom: client.CustomObjectsApi, namespace: str, waits: Waits
) -> None:
    await custom.create_namespaced_custom_object(
        GW_GROUP,
        "v1",
        namespace,
        "gateways",
        gateway("edge", [{"name": "http", "protocol": "HTTP", "port": 80}]),
    )
    await waits.custom_object(
        "gateways", "edge", lambda o: condition(o, "Programmed")["status"] == "True"
    )
    out = await asyncio.to_thread(kubectl, kubectl_env, "-n", namespace, "get", "gateway,httproute")
    assert out.returncode == 0, out.stderr
    assert CLASS in out.stdout and "True" in out.stdout
    out = await asyncio.to_thread(kubectl, kubectl_env, "get", "gatewayclass")
    assert out.returncode == 0 and CONTROLLER in out.stdout
    # client-side, then server-side apply of a route with defaulted atomic lists: the first
    # server-side apply takes over from kubectl-client-side-apply without conflicts
    manifest = json.dumps(route("r", [{"name": "edge"}], ["a.example.com"]))
    for flags in ((), ("--server-side",), ("--server-side",)):
        out = await asyncio.to_thread(
            kubectl, kubectl_env, "-n", namespace, "apply", *flags, "-f", "-", stdin=manifest
        )
        assert out.returncode == 0, out.stderr
    found = await waits.custom_object("httproutes", "r", has_parents)
    assert condition(found, "Accepted")["status"] == "True"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"mounts": [{"name": "nope", "mountPath": "/etc/x"}]},
            'spec.template.spec.containers[0].volumeMounts[0].name: Not found: "nope"',
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]},
            'Unsupported value: "status.phase"',
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
            "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value",
        ),
        (
            {"volumes": [{"name": "v", "configMap": {"name": "a"}}, {"name": "v", "emptyDir": {}}]},
            'spec.template.spec.volumes[1].name: Duplicate value: "v"',
        ),
    ],
)
async def test_pod_template_references_are_validated(
    apps: client.AppsV1Api, namespace: str, change: Obj, message: str
) -> None:
    with pytest.raises(client.ApiException) as info:
        await apps.create_namespaced_deployment(
            namespace, agent_deployment("proj-bad-api", **change)
        )
    assert info.value.status == 422
    assert message in status_of(info.value)["message"]


async def test_termination_message_falls_back_to_logs(
    namespace: str, apply: Any, waits: Waits, agent_env: dict[str, str]
) -> None:
    incomplete = {k: v for k, v in agent_env.items() if k != "MONGODB_URL"}
    await apply(
        agent_deployment(
            "proj-msg-api",
            env=plain_env(incomplete),
            terminationMessagePolicy="FallbackToLogsOnError",
        )
    )
    pods = await waits.pods(
        "proj-msg-api", lambda p: (container_status(p).get("lastState") or {}).get("terminated")
    )
    message = container_status(pods)["lastState"]["terminated"]["message"]
    assert "MONGODB_URL" in message and len(message.encode()) <= 2048


async def test_https_listener_needs_its_certificate_secret(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, waits: Waits
) -> None:
    https = {
        "name": "https",
        "protocol": "HTTPS",
        "port": 443,
        "tls": {"mode": "Terminate", "certificateRefs": [{"name": "edge-tls"}]},
    }
    await custom.create_namespaced_custom_object(
        GW_GROUP, "v1", namespace, "gateways", gateway("tls", [https])
    )

    def listener(obj: Obj) -> dict[str, Obj]:
        found = (obj.get("status") or {}).get("listeners") or [{}]
        return {c["type"]: c for c in found[0].get("conditions") or []}

    gw = await waits.custom_object("gateways", "tls", lambda o: bool(listener(o)))
    refs = listener(gw)["ResolvedRefs"]
    assert (refs["status"], refs["reason"]) == ("False", "InvalidCertificateRef")
    assert condition(gw, "Programmed")["status"] == "False"
    await core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "edge-tls"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": "cert", "tls.key": "key"},
        },
    )
    gw = await waits.custom_object(
        "gateways", "tls", lambda o: condition(o, "Programmed")["status"] == "True"
    )
    assert listener(gw)["ResolvedRefs"]["status"] == "True"


async def test_scale_to_zero_after_a_template_change_stops_the_old_pods(
    kube: Any, namespace: str, agent_env: dict[str, str]
) -> None:
    """kube-controller-manager's `scale`: the one active ReplicaSet takes the new count,
    even when the template changed with it (a Recreate Deployment scaled to 0)."""
    name = "proj-flap-api"
    selector = f"app.kubernetes.io/instance={name}"
    # the console's sequence for an agent that crashes: activate (template A at 1), roll
    # back (B at 0), retry (A at 1), roll back (B at 0): B's ReplicaSet exists the 2nd time
    first = deployment_manifest(name, image="goose-api:crash", env=agent_env)
    changed = deployment_manifest(name, image="goose-api:crash", replicas=0, env=agent_env)
    changed["spec"]["template"]["metadata"]["annotations"] = {"changed": "yes"}
    for body in (first, changed, first):
        await kube.apply_deployment(namespace, body)
        await kube.wait_pods(namespace, selector, lambda pods, b=body: bool(pods) == (b is first))
    await kube.apply_deployment(namespace, changed)
    await kube.wait_pods(namespace, selector, lambda pods: not pods)
    replicasets = await kube.apps.list_namespaced_replica_set(namespace, label_selector=selector)
    assert sorted(rs.spec.replicas for rs in replicasets.items) == [0, 0]


@pytest.mark.parametrize(
    ("liveness", "restarted"),
    [
        ({"httpGet": {"path": "/api/v1/health", "port": "http"}}, True),
        ({"tcpSocket": {"port": "http"}}, False),
    ],
    ids=["http-liveness", "tcp-liveness"],
)
async def test_liveness_during_a_database_blip(
    sim: SimClusterThread,
    kube: Any,
    namespace: str,
    agent_env: dict[str, str],
    liveness: dict[str, Any],
    restarted: bool,
) -> None:
    """The agent's health answers 503 while its MongoDB does not: an HTTP liveness probe on
    it kills the agent (and every reply in flight), a TCP one leaves it running."""
    name = "proj-live-api"
    body = deployment_manifest(name, env=agent_env)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"] = {**liveness, "periodSeconds": 1, "failureThreshold": 1}
    await kube.apply_deployment(namespace, body)
    await kube.wait_ready(namespace, name)
    sim.set_agent_database_outage(True)
    try:
        await asyncio.sleep(2.5)  # two liveness periods
    finally:
        sim.set_agent_database_outage(False)
    pods = await kube.core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={name}"
    )
    status = pods.items[0].status.container_statuses[0]
    assert (status.restart_count > 0) is restarted
    if restarted:
        assert status.last_state.terminated.exit_code == 137
        events = await kube.core.list_namespaced_event(namespace)
        assert any("failed liveness probe" in (e.message or "") for e in events.items)
