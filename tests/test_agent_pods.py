"""Agent pods as the real image needs them, against a simulated cluster and agent as strict.

The simulated agent exits without MONGODB_URL, GOOSE_PROVIDER and GOOSE_MODEL, keeps its
sessions in the MongoDB it is given, answers an unknown session with 200 and one `error`
event, and logs its secrets; the simulated kubelet resolves `envFrom` like a real one, and
the simulated dataplane drops proxy traffic that no NetworkPolicy admits. Every test drives
the console over HTTP and checks the cluster with an independent client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client as k8s

from gooseui.devcluster import SimClusterThread
from gooseui.devcluster.gateway import GATEWAY_CLASS
from tests.conftest import (
    MONGO_PASSWORD_MARKER,
    PROVIDER_KEY_MARKER,
    agent_mongo_url,
    console,
    live_console,
    write_agent_env,
)
from tests.test_lifecycle import new_project, url


async def raw(
    kube: k8s.ApiClient, method: str, path: str, body: Any = None, content_type: str = ""
) -> tuple[int, Any]:
    """One call to the simulated API server, as any client would make it."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    response = await kube.call_api(
        path,
        method,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    data = await response.read()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data.decode()


async def new_namespace(kube: k8s.ApiClient, prefix: str) -> str:
    """A fresh namespace (the console's own, a gateway's), made as an operator would."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    status, body = await raw(kube, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    return name


async def agent_call_url(
    sim: SimClusterThread, address: str, method: str = "GET"
) -> httpx.Response:
    """One call to the simulated API server with its token and CA, as the console makes it."""
    context = ssl.create_default_context(cafile=str(sim.ca_path))
    async with httpx.AsyncClient(
        verify=context, headers={"Authorization": f"Bearer {sim.token}"}, timeout=10
    ) as http:
        return await http.request(method, address)


async def agent_call(
    sim: SimClusterThread, project: dict[str, Any], method: str, path: str
) -> httpx.Response:
    """Straight to the project's agent through the API server's proxy (not the console)."""
    base = (
        f"{sim.url}/api/v1/namespaces/{project['namespace']}/services/"
        f"{project['service']}:3001/proxy"
    )
    return await agent_call_url(sim, base + path, method)


async def reply(http: httpx.AsyncClient, project: dict[str, Any], message: str) -> list[dict]:
    events = []
    async with http.stream("POST", url(project, "messages"), json={"message": message}) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


# --- the agent's environment ----------------------------------------------------------------


async def test_missing_keys_fail_before_anything_scales(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kube: k8s.ApiClient,
) -> None:
    env_file = write_agent_env(
        tmp_path / "partial.env", "mongodb://127.0.0.1:1", GOOSE_MODEL=None, GOOSE_PROVIDER=None
    )
    env_file.write_text("\n".join(line for line in env_file.read_text().splitlines()[:1]))
    monkeypatch.setenv("GOOSEUI_GOOSE_ENV_FILE", str(env_file))
    async with console(request) as client:
        project = await new_project(client)
        started = time.monotonic()
        response = await client.post(url(project, "activate"))
        elapsed = time.monotonic() - started
        assert response.status_code == 502, response.text
        body = response.json()
        assert body["code"] == "AgentMisconfigured"
        assert "GOOSE_PROVIDER, GOOSE_MODEL" in body["detail"]
        assert str(env_file) in body["detail"]
        assert elapsed < 1.0
        stored = (await client.get(url(project))).json()
        assert (stored["status"], stored["status_reason"]) == ("failed", "AgentMisconfigured")
    # nothing was applied, let alone scaled: not even the namespace
    status, _ = await raw(kube, "GET", f"/api/v1/namespaces/{project['namespace']}")
    assert status == 404


async def test_no_source_and_a_missing_source_secret_are_named(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOOSEUI_GOOSE_ENV_FILE")
    async with console(request) as client:
        project = await new_project(client)
        body = (await client.post(url(project, "activate"))).json()
        assert body["code"] == "AgentMisconfigured"
        assert "GOOSEUI_GOOSE_ENV_SECRET" in body["detail"]
        assert "GOOSEUI_GOOSE_ENV_FILE" in body["detail"]
    console_ns = f"c{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GOOSEUI_GOOSE_ENV_SECRET", "goose-env")
    monkeypatch.setenv("GOOSEUI_CONSOLE_NAMESPACE", console_ns)
    async with console(request) as client:
        project = await new_project(client, "Second")
        body = (await client.post(url(project, "activate"))).json()
        assert body["code"] == "AgentMisconfigured"
        assert f"Secret goose-env does not exist in namespace {console_ns}" in body["detail"]


async def test_environment_from_a_secret_reaches_the_pod_and_follows_changes(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    mongo_uri: str,
    kube: k8s.ApiClient,
) -> None:
    console_ns = await new_namespace(kube, "c")

    def secret(model: str) -> dict[str, Any]:
        values = {
            "MONGODB_URL": agent_mongo_url(mongo_uri),
            "GOOSE_PROVIDER": "simulated",
            "GOOSE_MODEL": model,
        }
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "goose-env", "namespace": console_ns},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
        }

    path = f"/api/v1/namespaces/{console_ns}/secrets"
    assert (await raw(kube, "POST", path, secret("model-one")))[0] == 201
    monkeypatch.delenv("GOOSEUI_GOOSE_ENV_FILE")
    monkeypatch.setenv("GOOSEUI_GOOSE_ENV_SECRET", "goose-env")
    monkeypatch.setenv("GOOSEUI_CONSOLE_NAMESPACE", console_ns)
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"))
        assert response.status_code == 200, response.text
        ns = project["namespace"]
        status, copy = await raw(kube, "GET", f"/api/v1/namespaces/{ns}/secrets/gooseui-agent-env")
        assert status == 200
        values = {k: base64.b64decode(v).decode() for k, v in copy["data"].items()}
        assert values["GOOSE_MODEL"] == "model-one"
        assert values["GOOSE_MODE"] == "auto"  # an approval mode would hang every tool call
        assert copy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gooseui"
        deployment_path = (
            f"/apis/apps/v1/namespaces/{ns}/deployments/proj-{project['project_id']}-api"
        )
        _, dep = await raw(kube, "GET", deployment_path)
        first = dep["spec"]["template"]["metadata"]["annotations"]["gooseui.io/agent-env-checksum"]

        # a deactivation only scales: the same template, no new ReplicaSet
        assert (await client.post(url(project, "deactivate"))).status_code == 200
        _, dep = await raw(kube, "GET", deployment_path)
        kept = dep["spec"]["template"]["metadata"]["annotations"]
        assert kept["gooseui.io/agent-env-checksum"] == first
        assert dep["spec"]["replicas"] == 0
        _, replicasets = await raw(kube, "GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")
        assert len(replicasets["items"]) == 1
        assert (await client.post(url(project, "activate"))).status_code == 200

        # the operator changes the source: the next activation carries it to a new pod
        changed = secret("model-two")
        assert (await raw(kube, "PUT", f"{path}/goose-env", changed))[0] == 200
        assert (await client.post(url(project, "deactivate"))).status_code == 200
        assert (await client.post(url(project, "activate"))).status_code == 200
        _, copy = await raw(kube, "GET", f"/api/v1/namespaces/{ns}/secrets/gooseui-agent-env")
        assert base64.b64decode(copy["data"]["GOOSE_MODEL"]).decode() == "model-two"
        _, dep = await raw(
            kube,
            "GET",
            f"/apis/apps/v1/namespaces/{ns}/deployments/proj-{project['project_id']}-api",
        )
        second = dep["spec"]["template"]["metadata"]["annotations"]["gooseui.io/agent-env-checksum"]
        assert second != first

        # the console owns its copies: the user's last project takes the namespace with it
        assert (await client.delete(url(project))).status_code == 204
        for _ in range(100):
            status, body = await raw(kube, "GET", f"/api/v1/namespaces/{ns}")
            if status == 404 or body.get("metadata", {}).get("deletionTimestamp"):
                break
            await asyncio.sleep(0.05)
        assert status == 404 or body["metadata"].get("deletionTimestamp")


async def test_a_secret_deleted_behind_the_console_is_a_config_error(
    client: httpx.AsyncClient, sim: SimClusterThread, kube: k8s.ApiClient
) -> None:
    sim.set_delays(pull=1.0)
    try:
        project = await new_project(client)
        response = await client.post(url(project, "activate"), params={"wait": "false"})
        assert response.status_code == 202, response.text
        secret = f"/api/v1/namespaces/{project['namespace']}/secrets/gooseui-agent-env"
        for _ in range(200):
            if (await raw(kube, "GET", secret))[0] == 200:
                break
            await asyncio.sleep(0.02)
        assert (await raw(kube, "DELETE", secret))[0] == 200
        for _ in range(300):
            current = (await client.get(url(project))).json()
            if current["status"] != "activating":
                break
            await asyncio.sleep(0.05)
        assert current["status"] == "failed", current
        assert current["status_reason"] == "ContainerConfigError"
        assert "gooseui-agent-env" in current["status_message"]
    finally:
        sim.set_delays(pull=0.05)


# --- chat against the real contract ---------------------------------------------------------


async def test_a_session_the_agent_forgot_is_replaced(
    console_env: dict[str, str], request: pytest.FixtureRequest, sim: SimClusterThread
) -> None:
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        project = (await http.post("/users/alice/projects", json={"name": "Forget"})).json()
        project = (await http.post(url(project, "activate"))).json()
        first = await reply(http, project, "remember me")
        old = first[0]["content"]["session_id"]
        assert first[-1]["type"] == "complete"
        # the agent loses the session (a wiped database, another agent deleting it)
        assert (
            await agent_call(sim, project, "DELETE", f"/api/v1/sessions/{old}")
        ).status_code == 204
        events = await reply(http, project, "are you there?")
        kinds = [e["type"] for e in events]
        new = events[0]["content"]["session_id"]
        assert kinds[0] == "session" and kinds[-1] == "complete"
        assert new != old
        assert "error" not in kinds  # one normal reply: the forgotten session is not shown
        assert kinds.count("session") == 1
        assert (await http.get(url(project))).json()["goose_session_id"] == new
        history = (await http.get(url(project, "messages"))).json()
        assert [m["role"] for m in history["messages"]] == ["User", "Assistant"]
        # a session the caller names explicitly must exist
        response = await http.post(
            url(project, "messages"), json={"message": "hi", "session_id": old}
        )
        assert response.status_code == 404 and response.json()["code"] == "SessionNotFound"


async def test_an_agent_error_reaches_the_caller_once(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        project = (await http.post("/users/alice/projects", json={"name": "Errors"})).json()
        project = (await http.post(url(project, "activate"))).json()
        events = await reply(http, project, "please simulate-error now")
        kinds = [e["type"] for e in events]
        assert kinds.count("error") == 1, kinds
        assert kinds[-1] == "complete"
        # an agent that cannot start its processing says so in one `error`, and ends
        events = await reply(http, project, "simulate-start-failure please")
        kinds = [e["type"] for e in events]
        assert kinds == ["session", "error"], kinds
        assert events[-1]["content"]["message"] == "Failed to start agent processing"


async def test_users_agents_keep_their_sessions_apart(
    console_env: dict[str, str], request: pytest.FixtureRequest, sim: SimClusterThread
) -> None:
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        alice = (await http.post("/users/alice/projects", json={"name": "A"})).json()
        bob = (await http.post("/users/bob/projects", json={"name": "B"})).json()
        alice = (await http.post(url(alice, "activate"))).json()
        bob = (await http.post(url(bob, "activate"))).json()
        session = (await reply(http, alice, "a secret plan"))[0]["content"]["session_id"]
        assert (
            await agent_call(sim, alice, "GET", f"/api/v1/sessions/{session}")
        ).status_code == 200
        # bob's agent reads another database: alice's conversation does not exist there
        assert (await agent_call(sim, bob, "GET", f"/api/v1/sessions/{session}")).status_code == 404
        listed = (await agent_call(sim, bob, "GET", "/api/v1/sessions")).text
        assert session not in listed


async def test_history_of_an_older_agent_image_is_empty(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    """The 8-route image has no history route (405): an empty history, not a 502."""
    from aiohttp import web

    from gooseui.goose import GooseClient

    async def not_allowed(request: web.Request) -> web.Response:
        return web.Response(status=405)

    app = web.Application()
    app.router.add_route("*", "/api/v1/sessions/{sid}/messages", not_allowed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    from gooseui.cluster.client import KubeClient

    goose = GooseClient(KubeClient())
    try:
        history = await goose.history(f"http://127.0.0.1:{port}", "s-1")
        assert history == {"session_id": "s-1", "messages": [], "total_count": 0}
    finally:
        await goose.close()
        await runner.cleanup()


# --- secrets stay in the pod ----------------------------------------------------------------


async def test_no_secret_reaches_an_answer_or_a_log_line(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    sim: SimClusterThread,
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        project = (await http.post("/users/alice/projects", json={"name": "Leak"})).json()
        for method, path in (
            ("POST", url(project, "activate")),
            ("GET", url(project)),
            ("GET", "/users/alice/projects"),
            ("GET", url(project, "messages")),
            ("GET", "/readyz"),
            ("GET", "/"),
            ("GET", f"/ui/users/alice/projects/{project['project_id']}"),
        ):
            bodies.append((await http.request(method, path)).text)
        events = await reply(http, project, "hello, use a tool")
        bodies.append(json.dumps(events))
        bodies.append((await http.get(url(project, "messages"))).text)
        # the agent does put its secrets in its health body and its log: they are there...
        health = await agent_call(
            sim, (await http.get(url(project))).json(), "GET", "/api/v1/health"
        )
        assert MONGO_PASSWORD_MARKER in health.text
        # ...and an unhealthy agent's answer is reported without them
        from gooseui.goose import GooseClient, GooseUnreachable

        runtime = None
        from nicegui import app

        runtime = app.state.runtime
        assert isinstance(runtime.goose, GooseClient)
        endpoint = (await http.get(url(project))).json()["endpoint"]
        result = await runtime.goose.health(endpoint)
        assert set(result) <= {"status", "version"}
        bodies.append(json.dumps(result))
        with pytest.raises(GooseUnreachable) as failed:
            await runtime.goose.health(endpoint.replace(project["service"], "proj-missing-api"))
        bodies.append(failed.value.message)
    lines = [record.getMessage() for record in caplog.records]
    lines += [json.dumps(getattr(record, "fields", {}), default=str) for record in caplog.records]
    for marker in (MONGO_PASSWORD_MARKER, PROVIDER_KEY_MARKER):
        assert not [b for b in bodies if marker in b], marker
        assert not [line for line in lines if marker in line], marker


# --- the network as it is -------------------------------------------------------------------


async def test_a_network_policy_that_drops_the_proxy_is_named(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    sim: SimClusterThread,
) -> None:
    # AKS with API Server VNet Integration (also kubeadm, kind, k3s): the API server's proxy
    # traffic comes from its own address, not from a pod in kube-system
    sim.set_proxy_source(namespace=None, ip="10.224.0.4")
    monkeypatch.setenv("GOOSEUI_HEALTH_TIMEOUT", "1.5")
    try:
        async with console(request) as client:
            project = await new_project(client)
            response = await client.post(url(project, "activate"))
            assert response.status_code == 502, response.text
            body = response.json()
            assert body["code"] == "HealthCheckFailed"
            assert "NetworkPolicy gooseui-allow-goose" in body["detail"]
            assert "GOOSEUI_APISERVER_CIDRS" in body["detail"]
        monkeypatch.setenv("GOOSEUI_APISERVER_CIDRS", "10.224.0.0/28")
        async with console(request) as client:
            response = await client.post(url(project, "activate"))
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "active"
    finally:
        sim.set_proxy_source(namespace="kube-system", ip=None)


async def test_a_route_the_gateway_refuses_fails_the_activation(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    kube: k8s.ApiClient,
) -> None:
    gateway_ns = await new_namespace(kube, "gw")
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "shared", "namespace": gateway_ns},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [
                {
                    "name": "http",
                    "protocol": "HTTP",
                    "port": 80,
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
        },
    }
    path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{gateway_ns}/gateways"
    status, body = await raw(kube, "POST", path, gateway)
    assert status == 201, body
    for name, value in {
        "INGRESS_BASE_DOMAIN": "goose.example.com",
        "GOOSEUI_EXPOSURE": "httproute",
        "GOOSEUI_GATEWAY_NAME": "shared",
        "GOOSEUI_GATEWAY_NAMESPACE": gateway_ns,
        "GOOSEUI_ENDPOINT_MODE": "proxy",
    }.items():
        monkeypatch.setenv(name, value)
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"))
        assert response.status_code == 502, response.text
        body = response.json()
        assert body["code"] == "RouteNotAccepted"
        assert f"{gateway_ns}/shared" in body["detail"]
        assert "NotAllowedByListeners" in body["detail"]
        # the gateway's owner admits routes from every namespace: the same project works
        gateway["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["from"] = "All"
        status, body = await raw(
            kube,
            "PATCH",
            f"{path}/shared",
            gateway,
            "application/merge-patch+json",
        )
        assert status == 200, body
        response = await client.post(url(project, "activate"))
        assert response.status_code == 200, response.text


async def test_the_port_setting_moves_the_server(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    kube: k8s.ApiClient,
) -> None:
    monkeypatch.setenv("GOOSEUI_GOOSE_PORT", "8080")
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        project = (await http.post("/users/alice/projects", json={"name": "Port"})).json()
        response = await http.post(url(project, "activate"))
        assert response.status_code == 200, response.text
        assert ":8080/proxy" in response.json()["endpoint"]
        assert (await reply(http, response.json(), "hi"))[-1]["type"] == "complete"


async def test_a_route_to_a_gateway_nobody_serves_is_named(
    console_env: dict[str, str], request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "INGRESS_BASE_DOMAIN": "goose.example.com",
        "GOOSEUI_EXPOSURE": "httproute",
        "GOOSEUI_GATEWAY_NAME": "missing",
        "GOOSEUI_GATEWAY_NAMESPACE": "nowhere",
        "GOOSEUI_ENDPOINT_MODE": "proxy",
        "GOOSEUI_ACTIVATION_TIMEOUT": "3",
    }.items():
        monkeypatch.setenv(name, value)
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"))
        body = response.json()
        assert (response.status_code, body["code"]) == (502, "RouteNotAccepted"), body
        assert "No controller of the Gateway nowhere/missing" in body["detail"]


async def test_a_crashing_agent_says_why_without_its_secrets(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # a MongoDB that does not answer: the agent exits before it opens its port
    unreachable = (
        f"mongodb://goose:{MONGO_PASSWORD_MARKER}@127.0.0.1:9/?serverSelectionTimeoutMS=200"
    )
    env_file = write_agent_env(tmp_path / "bad.env", "unused")
    env_file.write_text(
        env_file.read_text().replace(
            next(line for line in env_file.read_text().splitlines() if "MONGODB_URL" in line),
            f"MONGODB_URL={unreachable}",
        )
    )
    monkeypatch.setenv("GOOSEUI_GOOSE_ENV_FILE", str(env_file))
    async with console(request) as client:
        project = await new_project(client)
        response = await client.post(url(project, "activate"))
        body = response.json()
        assert (response.status_code, body["code"]) == (502, "CrashLoop"), body
        assert "Failed to initialize MongoDB connection" in body["detail"]
        assert MONGO_PASSWORD_MARKER not in body["detail"]
        stored = (await client.get(url(project))).json()
        assert MONGO_PASSWORD_MARKER not in stored["status_message"]


async def test_pull_secret_and_agent_config_are_copied_into_the_namespace(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kube: k8s.ApiClient,
) -> None:
    console_ns = await new_namespace(kube, "c")
    docker = base64.b64encode(b'{"auths": {"myacr.azurecr.io": {"auth": "eDp5"}}}').decode()
    pull = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "acr-pull", "namespace": console_ns},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": docker},
    }
    config = tmp_path / "config.yaml"
    config.write_text(
        "extensions:\n  developer:\n    enabled: true\n    type: builtin\n    name: developer\n"
    )
    monkeypatch.setenv("GOOSEUI_CONSOLE_NAMESPACE", console_ns)
    monkeypatch.setenv("GOOSEUI_IMAGE_PULL_SECRET", "acr-pull")
    monkeypatch.setenv("GOOSEUI_GOOSE_CONFIG", str(config))
    async with console(request) as client:
        project = await new_project(client)
        # the pull secret is not in the console's namespace yet: named, nothing applied
        body = (await client.post(url(project, "activate"))).json()
        assert body["code"] == "AgentMisconfigured"
        assert (
            f"image pull Secret acr-pull does not exist in namespace {console_ns}"
            in (body["detail"])
        )
        path = f"/api/v1/namespaces/{console_ns}/secrets"
        assert (await raw(kube, "POST", path, pull))[0] == 201
        response = await client.post(url(project, "activate"))
        assert response.status_code == 200, response.text
    ns = project["namespace"]
    status, copy = await raw(kube, "GET", f"/api/v1/namespaces/{ns}/secrets/acr-pull")
    assert status == 200
    assert (copy["type"], copy["data"]) == (pull["type"], pull["data"])
    status, config_map = await raw(
        kube, "GET", f"/api/v1/namespaces/{ns}/configmaps/gooseui-goose-config"
    )
    assert status == 200 and config_map["data"]["config.yaml"] == config.read_text()
    _, pods = await raw(
        kube,
        "GET",
        f"/api/v1/namespaces/{ns}/pods?labelSelector=gooseui.io/project-id%3D{project['project_id']}",
    )
    (pod,) = pods["items"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "acr-pull"}]
    # the agent read the mounted config.yaml: its extension was loaded
    _, log = await raw(kube, "GET", f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log")
    assert "Loaded 1 extensions" in log


async def test_an_unhealthy_agents_answer_is_reported_without_its_secrets(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    sim: SimClusterThread,
    kube: k8s.ApiClient,
) -> None:
    """The agent's 503 health body carries its whole MONGODB_URL: the console keeps none of it."""
    from nicegui import app

    from gooseui.goose import GooseUnreachable

    monkeypatch.setenv("ACR_IMAGE", "goose-api:never-ready")  # running, health answers 503
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        project = (await http.post("/users/alice/projects", json={"name": "Sick"})).json()
        assert (
            await http.post(url(project, "activate"), params={"wait": "false"})
        ).status_code == 202
        selector = f"gooseui.io/project-id%3D{project['project_id']}"
        pods_path = f"/api/v1/namespaces/{project['namespace']}/pods?labelSelector={selector}"
        for _ in range(200):
            _, pods = await raw(kube, "GET", pods_path)
            statuses = [
                s for p in pods["items"] for s in p["status"].get("containerStatuses") or []
            ]
            if statuses and "running" in statuses[0]["state"]:
                break
            await asyncio.sleep(0.05)
        pod = pods["items"][0]["metadata"]["name"]
        # the pod proxy reaches a pod that is not ready (the service proxy would not)
        endpoint = f"{sim.url}/api/v1/namespaces/{project['namespace']}/pods/{pod}:3001/proxy"
        answer = await agent_call_url(sim, endpoint + "/api/v1/health")
        assert answer.status_code == 503 and MONGO_PASSWORD_MARKER in answer.text
        with pytest.raises(GooseUnreachable) as unhealthy:
            await app.state.runtime.goose.health(endpoint)
        assert "503" in unhealthy.value.message
        assert MONGO_PASSWORD_MARKER not in unhealthy.value.message
        assert "mongodb" not in unhealthy.value.message.lower()
        await http.post(url(project, "deactivate"))


async def test_an_approval_mode_in_the_agents_config_cannot_hang_a_tool_call(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The API has no route to approve a tool call: GOOSE_MODE=auto in the environment wins
    over the config.yaml's mode, so the reply completes instead of hanging."""
    config = tmp_path / "config.yaml"
    config.write_text("GOOSE_MODE: approve\n")
    monkeypatch.setenv("GOOSEUI_GOOSE_CONFIG", str(config))
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        project = (await http.post("/users/alice/projects", json={"name": "Tools"})).json()
        project = (await http.post(url(project, "activate"))).json()
        events = await asyncio.wait_for(reply(http, project, "please use a tool"), 8)
        kinds = [e["type"] for e in events]
        assert "tool_request" in kinds and "tool_confirmation" not in kinds
        assert kinds[-1] == "complete"
