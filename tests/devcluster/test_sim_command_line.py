"""The agent container's command line, as a container runtime and the real binary take it.

The image's ENTRYPOINT is `goose api-server --port 3001 --host 0.0.0.0`: `args` alone are
appended to it (clap then refuses a second `api-server`), `command` replaces it, and the
process listens where its arguments say, which must be the pod's declared port on an address
other than loopback for the probe and the proxy to reach it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.devcluster.conftest import Kube, deployment_manifest

NAME = "proj-argv-api"
GOOSE = "/usr/local/bin/goose"


def manifest(agent_env: dict[str, str], port: int = 3001, **container: Any) -> dict[str, Any]:
    body = deployment_manifest(NAME, env=agent_env)
    spec = body["spec"]["template"]["spec"]["containers"][0]
    spec["ports"] = [{"containerPort": port, "name": "http"}]
    spec.update(container)
    return body


def container_status(pods: list[dict[str, Any]]) -> dict[str, Any]:
    return ((pods[0].get("status") or {}).get("containerStatuses") or [{}])[0]


async def crash(kube: Kube, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    await kube.apply_deployment(namespace, body)

    def looping(pods: list[dict[str, Any]]) -> bool:
        status = container_status(pods) if pods else {}
        return ((status.get("state") or {}).get("waiting") or {}).get(
            "reason"
        ) == "CrashLoopBackOff"

    pods = await kube.wait_pods(namespace, f"app.kubernetes.io/instance={NAME}", looping)
    return pods[0]


async def test_args_alone_are_appended_to_the_entrypoint(
    kube: Kube, namespace: str, agent_env: dict[str, str]
) -> None:
    pod = await crash(
        kube,
        namespace,
        manifest(agent_env, args=["api-server", "--host", "0.0.0.0", "--port", "3001"]),
    )
    last = container_status([pod])["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (2, "Error")
    log = await kube.core.read_namespaced_pod_log(pod["metadata"]["name"], namespace, previous=True)
    assert "error: unexpected argument 'api-server' found" in log


async def test_a_command_the_image_lacks_never_starts(
    kube: Kube, namespace: str, agent_env: dict[str, str]
) -> None:
    pod = await crash(
        kube, namespace, manifest(agent_env, command=["api-server"], args=["--port", "3001"])
    )
    last = container_status([pod])["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (128, "StartError")
    assert 'exec: "api-server": executable file not found in $PATH' in last["message"]


async def test_command_and_args_move_the_port(
    kube: Kube, namespace: str, http: httpx.AsyncClient, agent_env: dict[str, str]
) -> None:
    body = manifest(
        agent_env,
        8080,
        command=[GOOSE],
        args=["api-server", "--host", "0.0.0.0", "--port", "$(PORT)"],
    )
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "PORT", "value": "8080"})  # $(VAR) is expanded
    await kube.apply_deployment(namespace, body)
    await kube.wait_ready(namespace, NAME)
    pods = await kube.core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={NAME}"
    )
    pod = pods.items[0].metadata.name
    root = f"/api/v1/namespaces/{namespace}/pods/{pod}"
    assert (await http.get(f"{root}:8080/proxy/api/v1/health")).status_code == 200
    # nothing listens on the image's default port any more
    refused = await http.get(f"{root}:3001/proxy/api/v1/health")
    assert refused.status_code == 503 and "connection refused" in refused.text


@pytest.mark.parametrize(
    "args",
    [
        ["api-server", "--host", "0.0.0.0", "--port", "3000"],  # not the declared port
        ["api-server", "--port", "3001"],  # the default host is loopback
    ],
    ids=["other-port", "loopback"],
)
async def test_a_process_listening_elsewhere_is_never_ready(
    kube: Kube, namespace: str, agent_env: dict[str, str], args: list[str]
) -> None:
    await kube.apply_deployment(namespace, manifest(agent_env, command=[GOOSE], args=args))

    def running(pods: list[dict[str, Any]]) -> bool:
        status = container_status(pods) if pods else {}
        return "running" in (status.get("state") or {})

    pods = await kube.wait_pods(namespace, f"app.kubernetes.io/instance={NAME}", running)
    await asyncio.sleep(0.6)  # a few probe periods
    pods = await kube.wait_pods(namespace, f"app.kubernetes.io/instance={NAME}", running)
    assert container_status(pods)["ready"] is False
