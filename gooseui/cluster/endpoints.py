"""Where the console reaches a project's Goose API (DESIGN section 5, `ENDPOINT_MODE`)."""

from __future__ import annotations

from gooseui.cluster import manifests
from gooseui.cluster.client import KubeClient
from gooseui.config import Settings


def candidates(
    settings: Settings, kube: KubeClient, user_id: str, project_id: str, route_exists: bool
) -> list[str]:
    """Endpoints to try in order: `auto` outside the cluster tries the route, then the proxy.

    A fresh route's host may not resolve yet, or its load balancer may still be coming up;
    the API server's proxy works as soon as the pod is ready.
    """
    first = resolve(settings, kube, user_id, project_id, route_exists)
    if settings.endpoint_mode == "auto" and not kube.info.in_cluster and route_exists:
        as_proxy = settings.model_copy(update={"endpoint_mode": "proxy"})
        proxy = resolve(as_proxy, kube, user_id, project_id, route_exists)
        return [first, proxy] if proxy != first else [first]
    return [first]


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
