"""Fixtures for the simulated cluster tests.

One simulated cluster runs for the whole session in its own thread (as the console
runs it); tests reach it only over real protocols: kubernetes-asyncio, kubectl in a
subprocess, and httpx/httpx-sse through the API server's service proxy.

The simulated agent is as strict as the real `goose api-server`: without `MONGODB_URL`,
`GOOSE_PROVIDER` and `GOOSE_MODEL` it exits and the pod crash-loops. So every test's
Deployments carry the agent's environment as plain `env` values (`agent_env`): the
session's MongoDB (SecantusDB over TCP, with credentials in the URL as an operator's
would be) and a database of the test's own, so that tests never see each other's sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client import ApiClient, Configuration
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from gooseui.devcluster import AgentSettings, SimClusterThread
from tests.conftest import FAST as CONSOLE_FAST
from tests.conftest import MONGO_PASSWORD_MARKER

FAST = CONSOLE_FAST  # the same pod timings as the console's tests
AGENT = AgentSettings(delta_delay=0.02, keepalive=0.3, tool_delay=0.02)
GOOSE_IMAGE = "goose-api:latest"
TIMEOUT = (5, 30)  # kubernetes-asyncio (connect, read) socket timeouts
# The agent's environment for the current test (set by the autouse `agent_env` fixture)
AGENT_ENV: dict[str, str] = {}


@pytest.fixture(scope="session")
async def agent_mongo(mongo_uri: str) -> str:
    """The test MongoDB's URL with a user and password in it, as an operator's carries.

    The agent authenticates with the credentials its URL carries, as the real driver does,
    and SecantusDB checks them: so the user is created first. A real MongoDB under
    GOOSEUI_TEST_MONGO_URI is used as given.
    """
    if os.environ.get("GOOSEUI_TEST_MONGO_URI") or "@" in mongo_uri:
        return mongo_uri
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        await mongo.admin.command("createUser", "goose", pwd=MONGO_PASSWORD_MARKER, roles=["root"])
    except OperationFailure as exc:
        if "already exists" not in str(exc):
            raise
    finally:
        await mongo.close()
    return mongo_uri.replace("mongodb://", f"mongodb://goose:{MONGO_PASSWORD_MARKER}@", 1)


@pytest.fixture(autouse=True)
def agent_env(agent_mongo: str) -> Iterator[dict[str, str]]:
    """What the simulated agent needs to start: the test MongoDB, a database for this test
    only, and the simulator's provider and model. `deployment_manifest` puts it in `env`."""
    values = {
        "MONGODB_URL": agent_mongo,
        "MONGODB_DATABASE": f"goose_t_{uuid.uuid4().hex[:12]}",
        "GOOSE_PROVIDER": "simulated",
        "GOOSE_MODEL": "simulated-agent",
    }
    AGENT_ENV.clear()
    AGENT_ENV.update(values)
    yield values
    AGENT_ENV.clear()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimClusterThread]:
    sim = SimClusterThread(tmp_path_factory.mktemp("simcluster"), delays=FAST, agent=AGENT)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(cluster: SimClusterThread) -> Iterator[SimClusterThread]:
    """The session cluster, with faults and agent settings reset after the test."""
    yield cluster
    cluster.clear_faults()
    cluster.set_agent(**AGENT.__dict__)


@pytest.fixture(scope="session")
async def api(cluster: SimClusterThread) -> AsyncIterator[ApiClient]:
    """A kubernetes-asyncio client loaded from the simulator's kubeconfig, as the console does."""
    configuration = Configuration()
    await config.load_kube_config(
        config_file=str(cluster.kubeconfig_path), client_configuration=configuration
    )
    async with ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
def core(api: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
async def namespace(core: client.CoreV1Api) -> AsyncIterator[str]:
    """A fresh namespace, deleted afterwards."""
    name = "t-" + secrets.token_hex(4)
    await core.create_namespace({"metadata": {"name": name}}, _request_timeout=TIMEOUT)
    yield name
    try:
        await core.delete_namespace(name, _request_timeout=TIMEOUT)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def deployment_manifest(
    name: str,
    image: str = GOOSE_IMAGE,
    replicas: int = 1,
    labels: dict[str, str] | None = None,
    probe: bool = True,
    progress_deadline: int | None = None,
    restricted: bool = False,
    agent_env: bool = True,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment like the console's (DESIGN section 5).

    `agent_env=False` leaves out the agent's environment (its pod then crash-loops, as the
    real image does); `env` adds or overrides variables (plain values).
    """
    labels = {
        "app.kubernetes.io/name": "goose-api",
        "app.kubernetes.io/instance": name,
        **(labels or {}),
    }
    container: dict[str, Any] = {
        "name": "goose-api",
        "image": image,
        "ports": [{"containerPort": 3001, "name": "http"}],
    }
    values = {"USER_ID": "alice", "PROJECT_ID": name, **(AGENT_ENV if agent_env else {})}
    values.update(env or {})
    container["env"] = [{"name": k, "value": v} for k, v in values.items()]
    if restricted:  # passes Pod Security "restricted"
        container["securityContext"] = {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    if probe:
        container["readinessProbe"] = {
            "httpGet": {"path": "/api/v1/health", "port": "http"},
            "periodSeconds": 2,
        }
    spec: dict[str, Any] = {
        "replicas": replicas,
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
    }
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def service_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app.kubernetes.io/instance": name},
            "ports": [{"name": "http", "port": 3001, "targetPort": 3001}],
        },
    }


class Kube:
    """Small helpers over kubernetes-asyncio used by several tests."""

    def __init__(self, api: ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    async def apply_deployment(
        self, ns: str, body: dict[str, Any], manager: str = "gooseui", force: bool = True
    ) -> Any:
        return await self.apps.patch_namespaced_deployment(
            body["metadata"]["name"],
            ns,
            body,
            field_manager=manager,
            force=force,
            _content_type="application/apply-patch+yaml",
            _request_timeout=TIMEOUT,
        )

    async def apply_service(self, ns: str, name: str) -> Any:
        return await self.core.patch_namespaced_service(
            name,
            ns,
            service_manifest(name),
            field_manager="gooseui",
            force=True,
            _content_type="application/apply-patch+yaml",
            _request_timeout=TIMEOUT,
        )

    async def wait_deployment(
        self, ns: str, name: str, done: Callable[[dict[str, Any]], bool], within: float = 10.0
    ) -> dict[str, Any]:
        """Watch the Deployment until `done(raw object)`; the watch resumes from a list's rv."""
        listing = await self.apps.list_namespaced_deployment(
            ns, field_selector=f"metadata.name={name}", _request_timeout=TIMEOUT
        )
        for item in listing.items:
            raw = self.apps.api_client.sanitize_for_serialization(item)
            if done(raw):
                return raw
        async with asyncio.timeout(within), watch.Watch() as w:
            async for event in w.stream(
                self.apps.list_namespaced_deployment,
                ns,
                field_selector=f"metadata.name={name}",
                resource_version=listing.metadata.resource_version,
                timeout_seconds=int(within) + 1,
                _request_timeout=TIMEOUT,
            ):
                if done(event["raw_object"]):
                    return event["raw_object"]
        raise AssertionError(f"deployment {ns}/{name} never reached the expected state")

    async def wait_ready(
        self, ns: str, name: str, replicas: int = 1, within: float = 10.0
    ) -> dict[str, Any]:
        def ready(dep: dict[str, Any]) -> bool:
            status = dep.get("status") or {}
            return (
                status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 1)
                and status.get("readyReplicas", 0) == replicas
                and status.get("updatedReplicas", 0) == replicas
                and status.get("replicas", 0) == replicas
            )

        return await self.wait_deployment(ns, name, ready, within)

    async def wait_pods(
        self,
        ns: str,
        selector: str,
        done: Callable[[list[dict[str, Any]]], bool],
        within: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Poll-free wait on pods: list, then watch until `done(current pods)`."""
        listing = await self.core.list_namespaced_pod(
            ns, label_selector=selector, _request_timeout=TIMEOUT
        )
        pods = {
            p.metadata.name: self.core.api_client.sanitize_for_serialization(p)
            for p in listing.items
        }
        if done(list(pods.values())):
            return list(pods.values())
        async with asyncio.timeout(within), watch.Watch() as w:
            async for event in w.stream(
                self.core.list_namespaced_pod,
                ns,
                label_selector=selector,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=int(within) + 1,
                _request_timeout=TIMEOUT,
            ):
                raw = event["raw_object"]
                if event["type"] == "DELETED":
                    pods.pop(raw["metadata"]["name"], None)
                else:
                    pods[raw["metadata"]["name"]] = raw
                if done(list(pods.values())):
                    return list(pods.values())
        raise AssertionError(f"pods {selector} in {ns} never reached the expected state")

    async def events(self, ns: str, name: str | None = None) -> list[dict[str, Any]]:
        selector = f"involvedObject.name={name}" if name else None
        listing = await self.core.list_namespaced_event(
            ns, field_selector=selector, _request_timeout=TIMEOUT
        )
        return [self.core.api_client.sanitize_for_serialization(e) for e in listing.items]

    async def wait_event(self, ns: str, reason: str, within: float = 10.0) -> dict[str, Any]:
        listing = await self.core.list_namespaced_event(ns, _request_timeout=TIMEOUT)
        for item in listing.items:
            if item.reason == reason:
                return self.core.api_client.sanitize_for_serialization(item)
        async with asyncio.timeout(within), watch.Watch() as w:
            async for event in w.stream(
                self.core.list_namespaced_event,
                ns,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=int(within) + 1,
                _request_timeout=TIMEOUT,
            ):
                if event["raw_object"].get("reason") == reason:
                    return event["raw_object"]
        raise AssertionError(f"no {reason} event in {ns}")


@pytest.fixture
def kube(api: ApiClient) -> Kube:
    return Kube(api)


class Manifests:
    """Builders for the objects the console applies (exposed as a fixture)."""

    deployment = staticmethod(deployment_manifest)
    service = staticmethod(service_manifest)
    timeout = TIMEOUT


@pytest.fixture
def manifests() -> type[Manifests]:
    return Manifests


@pytest.fixture
def project(kube: Kube, namespace: str) -> Callable[..., Any]:
    """Apply a Deployment + Service named `name` and optionally wait until Ready."""

    async def make(name: str = "proj-abc-api", wait: bool = True, **kwargs: Any) -> dict[str, Any]:
        await kube.apply_deployment(namespace, deployment_manifest(name, **kwargs))
        await kube.apply_service(namespace, name)
        if wait:
            return await kube.wait_ready(namespace, name, kwargs.get("replicas", 1))
        return {}

    return make


@pytest.fixture(scope="session")
def tls_context(cluster: SimClusterThread) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cluster.ca_path))


@pytest.fixture
async def http(
    cluster: SimClusterThread, tls_context: ssl.SSLContext
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for the API server (bearer token + the simulator's CA), as the console's
    proxy client is built."""
    async with httpx.AsyncClient(
        base_url=cluster.url,
        verify=tls_context,
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=httpx.Timeout(10.0),
    ) as http_client:
        yield http_client


@pytest.fixture(scope="session")
def kubectl_env(cluster: SimClusterThread) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["KUBECONFIG"] = str(cluster.kubeconfig_path)
    env["HOME"] = str(
        Path(cluster.kubeconfig_path).parent
    )  # kubectl's discovery cache stays private
    return env


# ---------------------------------------------------------------------------- the agent's API

Events = list[tuple[float, dict[str, Any]]]


def agent_base(namespace: str, name: str) -> str:
    """A project's Goose API through the API server's service proxy (as the console goes)."""
    return f"/api/v1/namespaces/{namespace}/services/{name}:3001/proxy"


async def new_session(http: httpx.AsyncClient, base: str) -> str:
    response = await http.post(base + "/api/v1/sessions")
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


async def chat(http: httpx.AsyncClient, base: str, sid: str, message: str) -> Events:
    """Send a message and collect (arrival time, payload) for every event."""
    from httpx_sse import aconnect_sse

    events: Events = []
    url = base + f"/api/v1/sessions/{sid}/messages"
    async with aconnect_sse(http, "POST", url, json={"message": message}) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for sse in source.aiter_sse():
            assert sse.event == "message" and sse.id == ""  # no event:/id: fields on the wire
            events.append((time.monotonic(), json.loads(sse.data)))
    return events


def text_of(events: Events) -> str:
    return "".join(p["content"]["content"] for _, p in events if p["type"] == "message")
