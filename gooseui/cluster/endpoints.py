"""Where the console reaches a project's Goose API (DESIGN section 5, `ENDPOINT_MODE`)."""

from __future__ import annotations

from gooseui.cluster import manifests
from gooseui.cluster.client import KubeClient
from gooseui.config import Settings


def resolve(
    settings: Settings, kube: KubeClient, user_id: str, project_id: str, route_exists: bool
) -> str:
    """The base URL of the project's Goose API, without a trailing slash.

    `service` needs the console inside the cluster; `ingress` needs the route's host to
    resolve where the console runs; `proxy` goes through the API server with the
    kubeconfig's credentials and works from anywhere a kubeconfig works.
    """
    namespace = manifests.namespace_name(settings, user_id)
    name = manifests.object_name(project_id)
    port = settings.goose_port
    mode = settings.endpoint_mode
    host = manifests.route_host(settings, user_id, project_id)
    if mode == "auto":
        if kube.info.in_cluster:
            mode = "service"
        elif route_exists and host:
            mode = "ingress"
        else:
            mode = "proxy"
    if mode == "service":
        return f"http://{name}.{namespace}.svc.cluster.local:{port}"
    if mode == "ingress" and host:
        return f"http://{host}"
    server = (kube.info.server or "").rstrip("/")
    return f"{server}/api/v1/namespaces/{namespace}/services/{name}:{port}/proxy"
