"""The resource types the simulated API server knows.

One table drives discovery, OpenAPI, URL routing and the store, so a resource is
added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resource:
    """One REST resource (a plural under a group version)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = True
    verbs: tuple[str, ...] = field(
        default=(
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        )
    )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def key(self) -> tuple[str, str]:
        """Store key: (group, plural); one version per group is served."""
        return (self.group, self.plural)


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", False, ("ns",), ("status", "finalize")),
    Resource("", "v1", "Node", "nodes", False, ("no",), ("status", "proxy")),
    Resource(
        "",
        "v1",
        "Pod",
        "pods",
        True,
        ("po",),
        ("status", "log", "proxy", "binding", "eviction"),
        ("all",),
    ),
    Resource("", "v1", "Service", "services", True, ("svc",), ("status", "proxy"), ("all",)),
    Resource("", "v1", "Event", "events", True, ("ev",), (), (), has_status=False),
    Resource("", "v1", "Secret", "secrets", True, (), (), (), has_status=False),
    Resource("", "v1", "ConfigMap", "configmaps", True, ("cm",), (), (), has_status=False),
    Resource("", "v1", "ResourceQuota", "resourcequotas", True, ("quota",), ("status",)),
    Resource("", "v1", "LimitRange", "limitranges", True, ("limits",), (), (), has_status=False),
    Resource(
        "apps", "v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), ("all",)
    ),
    Resource(
        "apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), ("all",)
    ),
    Resource(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        ("hpa",),
        ("status",),
        ("all",),
    ),
    Resource("networking.k8s.io", "v1", "Ingress", "ingresses", True, ("ing",), ("status",)),
    Resource(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        True,
        ("netpol",),
        (),
        (),
        has_status=False,
    ),
    Resource(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
        True,
        (),
        ("status",),
        ("gateway-api",),
    ),
    Resource(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        True,
        ("gtw",),
        ("status",),
        ("gateway-api",),
    ),
    Resource(
        "gateway.networking.k8s.io",
        "v1",
        "GatewayClass",
        "gatewayclasses",
        False,
        ("gc",),
        ("status",),
        ("gateway-api",),
    ),
)

# Groups in the order `/apis` lists them (autoscaling/v1 serves HorizontalPodAutoscalers, as
# real servers do, and the Scale kind of the `/scale` subresources).
GROUP_VERSIONS: tuple[tuple[str, str], ...] = (
    ("", "v1"),
    ("apps", "v1"),
    ("autoscaling", "v1"),
    ("networking.k8s.io", "v1"),
    ("gateway.networking.k8s.io", "v1"),
)

_BY_PATH: dict[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r for r in RESOURCES
}
_BY_KEY: dict[tuple[str, str], Resource] = {r.key: r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at /api(s)/<group>/<version>/<plural>, if any."""
    return _BY_PATH.get((group, version, plural))


def by_key(group: str, plural: str) -> Resource:
    """The resource for a store key; raises KeyError for an unknown one."""
    return _BY_KEY[(group, plural)]


def in_group_version(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


NAMESPACES = by_key("", "namespaces")
NODES = by_key("", "nodes")
PODS = by_key("", "pods")
SERVICES = by_key("", "services")
EVENTS = by_key("", "events")
QUOTAS = by_key("", "resourcequotas")
LIMITRANGES = by_key("", "limitranges")
DEPLOYMENTS = by_key("apps", "deployments")
REPLICASETS = by_key("apps", "replicasets")
SECRETS = by_key("", "secrets")
CONFIGMAPS = by_key("", "configmaps")
NETWORKPOLICIES = by_key("networking.k8s.io", "networkpolicies")
HTTPROUTES = by_key("gateway.networking.k8s.io", "httproutes")
GATEWAYS = by_key("gateway.networking.k8s.io", "gateways")
GATEWAYCLASSES = by_key("gateway.networking.k8s.io", "gatewayclasses")
