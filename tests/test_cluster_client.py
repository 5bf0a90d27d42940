"""The console's Kubernetes client against the simulated API server: credentials and retries."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from gooseui.cluster.client import ClusterUnavailable, KubeClient, KubeError
from gooseui.devcluster import SimClusterThread

PLUGIN = """
import datetime, json, os, sys
with open(os.environ["RUNS_FILE"], "a") as runs:
    runs.write("run\\n")
expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
    seconds=int(os.environ["EXPIRES_IN"]))
json.dump({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
           "status": {"token": os.environ["TOKEN"],
                      "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}},
          sys.stdout)
"""


def exec_kubeconfig(sim: SimClusterThread, tmp_path: Path, expires_in: int) -> tuple[Path, Path]:
    """The simulator's kubeconfig with its token handed out by an exec plugin (like kubelogin)."""
    config = yaml.safe_load(sim.kubeconfig_path.read_text())
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    runs = tmp_path / f"runs-{expires_in}"
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
            "env": [
                {"name": "RUNS_FILE", "value": str(runs)},
                {"name": "TOKEN", "value": sim.token},
                {"name": "EXPIRES_IN", "value": str(expires_in)},
            ],
        }
    }
    path = tmp_path / f"kubeconfig-{expires_in}.yaml"
    path.write_text(json.dumps(config))
    return path, runs


def run_count(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


async def test_exec_plugin_token_is_reused_while_valid(
    sim: SimClusterThread, tmp_path: Path
) -> None:
    path, runs = exec_kubeconfig(sim, tmp_path, expires_in=3600)
    kube = KubeClient(str(path))
    assert (await kube.connect()).configured
    try:
        for _ in range(3):
            assert (await kube.version())["gitVersion"]
        assert run_count(runs) == 1
    finally:
        await kube.close()


async def test_exec_plugin_token_is_refreshed_near_expiry(
    sim: SimClusterThread, tmp_path: Path
) -> None:
    # a token within kubernetes-asyncio's five-minute skew counts as expiring: fetch anew
    path, runs = exec_kubeconfig(sim, tmp_path, expires_in=60)
    kube = KubeClient(str(path))
    await kube.connect()
    try:
        before = run_count(runs)
        for _ in range(3):
            assert (await kube.version())["gitVersion"]
        assert run_count(runs) >= before + 3
        headers = await kube.auth_headers()  # the service proxy's requests refresh too
        assert headers["authorization"] == f"Bearer {sim.token}"
    finally:
        await kube.close()


async def test_refused_credentials_and_missing_objects(
    sim: SimClusterThread, tmp_path: Path
) -> None:
    config = yaml.safe_load(sim.kubeconfig_path.read_text())
    config["users"][0]["user"] = {"token": "wrong"}
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(config))
    kube = KubeClient(str(path))
    await kube.connect()
    try:
        with pytest.raises(KubeError) as caught:
            await kube.request("GET", "/api/v1/namespaces")
        assert caught.value.status == 401
    finally:
        await kube.close()
    good = KubeClient(str(sim.kubeconfig_path))
    await good.connect()
    try:
        assert await good.get("/api/v1/namespaces/does-not-exist") is None
        sim.fail_requests("/api/v1/namespaces/flaky", 503, count=None)
        with pytest.raises(ClusterUnavailable):
            await good.get("/api/v1/namespaces/flaky")
    finally:
        await good.close()


async def test_unreachable_api_server(tmp_path: Path, sim: SimClusterThread) -> None:
    config = yaml.safe_load(sim.kubeconfig_path.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    path = tmp_path / "down.yaml"
    path.write_text(json.dumps(config))
    kube = KubeClient(str(path))
    await kube.connect()
    try:
        with pytest.raises(ClusterUnavailable) as caught:
            await kube.version()
        assert "does not answer" in caught.value.detail
    finally:
        await kube.close()
