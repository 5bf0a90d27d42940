"""The kubeconfig file that points kubectl and kubernetes-asyncio at the simulator.

HTTPS on loopback with the simulator's CA and a bearer token, as a kind cluster's
kubeconfig looks; kubectl and kubernetes-asyncio load it unchanged, so the console
uses the same `load_kube_config` call it uses for a real cluster. (Over plain HTTP
kubectl would silently drop the token.)
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

import yaml

CONTEXT_NAME = "gooseui-simulated"


def render(
    server_url: str, token: str, ca_pem: bytes | None = None, namespace: str = "default"
) -> str:
    """The kubeconfig YAML for `server_url` with a bearer-token user."""
    cluster: dict[str, str] = {"server": server_url}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": CONTEXT_NAME, "cluster": cluster}],
        "users": [{"name": CONTEXT_NAME, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT_NAME,
                "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT_NAME,
    }
    return yaml.safe_dump(config, sort_keys=False)


def write(path: Path, server_url: str, token: str, ca_pem: bytes | None = None) -> Path:
    """Write the kubeconfig atomically with mode 0600 (it holds a credential)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(render(server_url, token, ca_pem))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: Path) -> tuple[str, str, bytes | None]:
    """Server URL, token and CA certificate of a kubeconfig this module wrote."""
    config = yaml.safe_load(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = cluster.get("certificate-authority-data")
    return (
        cluster["server"],
        config["users"][0]["user"]["token"],
        base64.b64decode(ca) if ca else None,
    )
