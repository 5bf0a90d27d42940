"""Discovery documents (`/version`, `/api`, `/apis`, group versions).

kubectl maps kinds to URLs through these, including the subresources (`kubectl
scale` needs `deployments/scale` of kind autoscaling/v1 Scale; `get --raw` through
the service proxy needs `services/proxy`).
"""

from __future__ import annotations

from typing import Any

from .resources import GROUP_VERSIONS, in_group_version

KUBERNETES_VERSION = "v1.32.0"

_SUBRESOURCE_INFO: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    # name: (group, version, kind, verbs); empty group/version = the parent's
    "status": ("", "", "", ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "proxy": ("", "", "", ("create", "delete", "get", "patch", "update")),
    "log": ("", "", "Pod", ("get",)),
    "binding": ("", "", "Binding", ("create",)),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "finalize": ("", "", "", ("update",)),
}
_PROXY_KINDS = {
    "pods": "PodProxyOptions",
    "services": "ServiceProxyOptions",
    "nodes": "NodeProxyOptions",
}


def version_info() -> dict[str, Any]:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def core_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, v) for g, v in GROUP_VERSIONS if g],
    }


def group(name: str) -> dict[str, Any] | None:
    for g, v in GROUP_VERSIONS:
        if g and g == name:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, v)}
    return None


def resource_list(group_name: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of a served group version, or None."""
    if (group_name, version) not in GROUP_VERSIONS:
        return None
    resources: list[dict[str, Any]] = []
    for res in in_group_version(group_name, version):
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": list(res.verbs),
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        resources.append(entry)
        for sub in res.subresources:
            sub_group, sub_version, sub_kind, verbs = _SUBRESOURCE_INFO[sub]
            kind = (
                _PROXY_KINDS.get(res.plural, res.kind) if sub == "proxy" else sub_kind or res.kind
            )
            sub_entry: dict[str, Any] = {
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "namespaced": res.namespaced,
                "kind": kind,
                "verbs": list(verbs),
            }
            if sub_group:
                sub_entry["group"] = sub_group
                sub_entry["version"] = sub_version
            resources.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group_name}/{version}" if group_name else version,
        "resources": resources,
    }
