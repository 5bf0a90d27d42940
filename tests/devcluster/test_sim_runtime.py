"""Starting the simulator: on the caller's loop, in a thread, and as a module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient, Configuration

from gooseui.devcluster import CONTEXT_NAME, SimCluster, delays_from_env, run_in_thread


async def test_in_loop_cluster_and_kubeconfig(tmp_path: Path) -> None:
    async with SimCluster(tmp_path) as sim:
        assert sim.url.startswith("https://127.0.0.1:")
        kubeconfig = yaml.safe_load(sim.kubeconfig_path.read_text())
        assert kubeconfig["current-context"] == CONTEXT_NAME
        assert kubeconfig["clusters"][0]["cluster"]["server"] == sim.url
        assert sim.kubeconfig_path == tmp_path / "simulated-kubeconfig.yaml"
        assert oct(sim.kubeconfig_path.stat().st_mode & 0o777) == "0o600"
        configuration = Configuration()
        await config.load_kube_config(
            config_file=str(sim.kubeconfig_path), client_configuration=configuration
        )
        async with ApiClient(configuration) as api:
            names = [n.metadata.name for n in (await client.CoreV1Api(api).list_namespace()).items]
        assert {"default", "kube-system"} <= set(names)
        assert sim.requests_served >= 1


def test_run_in_thread_start_stop(tmp_path: Path) -> None:
    sim = run_in_thread(tmp_path, port=0)
    try:
        assert sim.kubeconfig_path.exists()
        fault = sim.fail_requests("/api/v1/namespaces", 500, count=3)
        assert fault.status == 500
        assert sim.compact_history() > 0
    finally:
        sim.stop()
    assert sim.cluster is None


def test_delays_from_environment() -> None:
    delays = delays_from_env({"GOOSEUI_SIM_DELAY_PULL": "2", "GOOSEUI_SIM_DELAY_READY": "0.5"})
    assert (delays.pull, delays.ready) == (2.0, 0.5)


def test_module_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "GOOSEUI_SIM_DELAY_PULL": "0.1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gooseui.devcluster", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert first.startswith("Simulated cluster: https://127.0.0.1:")
        assert second.strip() == f"Kubeconfig: {tmp_path / 'simulated-kubeconfig.yaml'}"
        kubectl = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(tmp_path / "simulated-kubeconfig.yaml"),
                "get",
                "namespaces",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert "namespace/default" in kubectl.stdout
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()


def test_faults_are_injected_from_another_process(tmp_path: Path) -> None:
    """A simulator on its own, broken and mended with `python -m gooseui.devcluster fault`,
    observed with kubectl; SIGTERM then stops it cleanly."""
    import json
    import shutil
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "gooseui.devcluster", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    kubeconfig = str(tmp_path / "simulated-kubeconfig.yaml")

    def fault(*args: str) -> dict:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "gooseui.devcluster",
                "fault",
                "--kubeconfig",
                kubeconfig,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "--request-timeout=1s", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "HOME": str(tmp_path)},
        )

    try:
        assert process.stdout is not None
        process.stdout.readline()
        process.stdout.readline()
        assert fault("fail", "--path", "/api/v1/namespaces", "--status", "503")["ok"]
        assert fault("hang", "--path", "/apis/apps/v1")["fault"]["hang"] is True
        shown = fault("show")["requests"]
        assert [(f["path_prefix"], f["status"], f["hang"]) for f in shown] == [
            ("/api/v1/namespaces", 503, False),
            ("/apis/apps/v1", None, True),
        ]
        if shutil.which("kubectl"):
            refused = kubectl("get", "namespaces")
            assert refused.returncode != 0
            assert "unable to handle the request" in refused.stderr, refused.stderr
            started = time.monotonic()
            hung = kubectl("get", "deployments", "-A")
            assert hung.returncode != 0 and time.monotonic() - started < 15
        fault("freeze-watches")
        assert fault("show")["watches_frozen"] is True
        fault("clear")
        assert fault("show")["requests"] == []
        assert fault("show")["watches_frozen"] is False
        fault("audit-reset")
        if shutil.which("kubectl"):
            assert kubectl("get", "deployments", "-A").returncode == 0
            # the audit counts kubectl's list too (not its discovery, not these control calls)
            calls = fault("audit")["audit"]["calls"]
            assert {"verb": "list", "group": "apps", "resource": "deployments",
                    "cluster_wide": True, "count": 1} in calls  # fmt: skip
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()
