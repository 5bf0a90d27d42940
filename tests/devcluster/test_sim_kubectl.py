"""kubectl 1.32 against the simulator, with the written kubeconfig and default flags."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def kubectl(
    env: dict[str, str], *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["kubectl", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture
def kns(kubectl_env: dict[str, str]) -> Any:
    name = "k-" + secrets.token_hex(4)
    kubectl(kubectl_env, "create", "namespace", name)
    yield name
    kubectl(kubectl_env, "delete", "namespace", name, "--wait=false", check=False)


def write_manifests(tmp_path: Path, manifests: Any, name: str, namespace: str) -> Path:
    dep = manifests.deployment(name)
    svc = manifests.service(name)
    for obj in (dep, svc):
        obj["metadata"]["namespace"] = namespace
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all([dep, svc]))
    return path


def test_server_side_apply_wait_scale_proxy_delete(
    kubectl_env: dict[str, str], kns: str, tmp_path: Path, manifests: Any
) -> None:
    name = "proj-kctl-api"
    path = write_manifests(tmp_path, manifests, name, kns)
    out = kubectl(kubectl_env, "apply", "--server-side", "-f", str(path)).stdout
    assert "serverside-applied" in out
    kubectl(
        kubectl_env,
        "wait",
        "-n",
        kns,
        "--for=condition=Available",
        f"deployment/{name}",
        "--timeout=30s",
    )

    health = kubectl(
        kubectl_env,
        "get",
        "--raw",
        f"/api/v1/namespaces/{kns}/services/{name}:3001/proxy/api/v1/health",
    )
    assert json.loads(health.stdout)["status"] == "ok"

    pods = kubectl(
        kubectl_env, "get", "pods", "-n", kns, "-l", f"app.kubernetes.io/instance={name}"
    )
    lines = pods.stdout.strip().splitlines()
    assert lines[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[1:3] == ["1/1", "Running"]

    kubectl(kubectl_env, "scale", "-n", kns, f"deployment/{name}", "--replicas=0")
    kubectl(
        kubectl_env,
        "wait",
        "-n",
        kns,
        "--for=delete",
        "pod",
        "-l",
        f"app.kubernetes.io/instance={name}",
        "--timeout=30s",
    )
    gone = kubectl(
        kubectl_env,
        "get",
        "pods",
        "-n",
        kns,
        "-l",
        f"app.kubernetes.io/instance={name}",
        "-o",
        "name",
    )
    assert gone.stdout.strip() == ""
    kubectl(kubectl_env, "scale", "-n", kns, f"deployment/{name}", "--replicas=1")
    kubectl(
        kubectl_env,
        "wait",
        "-n",
        kns,
        "--for=condition=Available",
        f"deployment/{name}",
        "--timeout=30s",
    )
    ready = kubectl(
        kubectl_env, "get", "deployment", "-n", kns, name, "-o", "jsonpath={.status.readyReplicas}"
    )
    assert ready.stdout == "1"

    deleted = kubectl(kubectl_env, "delete", "-f", str(path))
    assert f'deployment.apps "{name}" deleted' in deleted.stdout
    missing = kubectl(kubectl_env, "get", "deployment", "-n", kns, name, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_client_side_apply_and_reapply(
    kubectl_env: dict[str, str], kns: str, tmp_path: Path, manifests: Any
) -> None:
    name = "proj-csa-api"
    path = write_manifests(tmp_path, manifests, name, kns)
    first = kubectl(kubectl_env, "apply", "-f", str(path))
    assert f"deployment.apps/{name} created" in first.stdout
    assert "warning" not in first.stderr.lower()
    docs = list(yaml.safe_load_all(path.read_text()))
    docs[0]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "bob"
    path.write_text(yaml.safe_dump_all(docs))
    second = kubectl(kubectl_env, "apply", "-f", str(path))
    assert f"deployment.apps/{name} configured" in second.stdout
    assert f"service/{name} unchanged" in second.stdout
    assert "warning" not in second.stderr.lower()
    env = kubectl(
        kubectl_env,
        "get",
        "deploy",
        "-n",
        kns,
        name,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[0].value}",
    )
    assert env.stdout == "bob"
    kubectl(kubectl_env, "rollout", "status", "-n", kns, f"deployment/{name}", "--timeout=30s")


def test_describe_events_and_nodes(
    kubectl_env: dict[str, str], kns: str, tmp_path: Path, manifests: Any
) -> None:
    name = "proj-desc-api"
    path = write_manifests(tmp_path, manifests, name, kns)
    kubectl(kubectl_env, "apply", "--server-side", "-f", str(path))
    kubectl(
        kubectl_env,
        "wait",
        "-n",
        kns,
        "--for=condition=Available",
        f"deployment/{name}",
        "--timeout=30s",
    )
    described = kubectl(kubectl_env, "describe", "deployment", "-n", kns, name).stdout
    assert "NewReplicaSetAvailable" in described and "ScalingReplicaSet" in described
    events = kubectl(kubectl_env, "get", "events", "-n", kns).stdout
    assert "Scheduled" in events and "Started" in events
    nodes = kubectl(kubectl_env, "get", "nodes").stdout
    assert "Ready" in nodes
    logs = kubectl(kubectl_env, "logs", "-n", kns, f"deployment/{name}").stdout
    # the readiness probe's health calls, as the real agent logs them
    assert "Checking MongoDB health" in logs


def test_imperative_create_commands(
    kubectl_env: dict[str, str], kns: str, agent_env: dict[str, str]
) -> None:
    """`kubectl create deployment|service` send protobuf bodies; the simulator reads them."""
    kubectl(
        kubectl_env, "create", "secret", "generic", "agent-env", "-n", kns,
        *(f"--from-literal={key}={value}" for key, value in agent_env.items()),
    )  # fmt: skip
    kubectl(
        kubectl_env, "create", "deployment", "web", "-n", kns, "--image=goose-api:latest",
        "--port=3001", "--replicas=2",
    )  # fmt: skip
    # without its environment the agent exits at once; `set env --from` gives it the Secret
    kubectl(kubectl_env, "set", "env", "-n", kns, "deployment/web", "--from=secret/agent-env")
    kubectl(kubectl_env, "create", "service", "clusterip", "web", "-n", kns, "--tcp=3001:3001")
    kubectl(
        kubectl_env,
        "wait",
        "-n",
        kns,
        "--for=condition=Available",
        "deployment/web",
        "--timeout=30s",
    )
    ready = kubectl(
        kubectl_env, "get", "deploy", "web", "-n", kns, "-o", "jsonpath={.status.readyReplicas}"
    )
    assert ready.stdout == "2"
    health = kubectl(
        kubectl_env,
        "get",
        "--raw",
        f"/api/v1/namespaces/{kns}/services/web:3001/proxy/api/v1/health",
    )
    assert json.loads(health.stdout)["status"] == "ok"
