"""Server-side `Table` rendering (`Accept: application/json;as=Table`).

kubectl asks for tables so that `kubectl get pods` shows READY, STATUS and RESTARTS
computed the way the real server prints them; without this it falls back to a bare
name/age listing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .selectors import selector_to_string
from .util import parse_iso

Row = list[Any]


def human_age(timestamp: str | None, now: float | None = None) -> str:
    """kubectl's `HumanDuration` of the time since `timestamp`."""
    if not timestamp:
        return "<unknown>"
    seconds = int((now or time.time()) - parse_iso(timestamp))
    if seconds < 0:
        return "<invalid>"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    return f"{days}d" if days < 365 * 2 else f"{days // 365}y"


def _col(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}


def pod_status_reason(pod: dict[str, Any]) -> str:
    """The STATUS column of `kubectl get pods`."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    if pod.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_row(pod: dict[str, Any]) -> Row:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount", 0)) for cs in statuses)
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        pod_status_reason(pod),
        restarts,
        human_age(pod["metadata"].get("creationTimestamp")),
        (pod.get("status") or {}).get("podIP") or "<none>",
        (pod.get("spec") or {}).get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _deployment_row(dep: dict[str, Any]) -> Row:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    return [
        dep["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        human_age(dep["metadata"].get("creationTimestamp")),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        ",".join(f"{k}={v}" for k, v in selector.items()),
    ]


def _replicaset_row(rs: dict[str, Any]) -> Row:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    return [
        rs["metadata"]["name"],
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        human_age(rs["metadata"].get("creationTimestamp")),
    ]


def _service_row(svc: dict[str, Any]) -> Row:
    spec = svc.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    selector = spec.get("selector") or {}
    return [
        svc["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        "<none>",
        ports or "<none>",
        human_age(svc["metadata"].get("creationTimestamp")),
        ",".join(f"{k}={v}" for k, v in selector.items()) or "<none>",
    ]


def _namespace_row(ns: dict[str, Any]) -> Row:
    return [
        ns["metadata"]["name"],
        (ns.get("status") or {}).get("phase", "Active"),
        human_age(ns["metadata"].get("creationTimestamp")),
    ]


def _event_row(ev: dict[str, Any]) -> Row:
    involved = ev.get("involvedObject") or {}
    return [
        human_age(ev.get("lastTimestamp") or ev["metadata"].get("creationTimestamp")),
        ev.get("type", ""),
        ev.get("reason", ""),
        f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}",
        ev.get("message", ""),
    ]


def _node_row(node: dict[str, Any]) -> Row:
    ready = next(
        (
            c.get("status")
            for c in (node.get("status") or {}).get("conditions") or []
            if c.get("type") == "Ready"
        ),
        "Unknown",
    )
    status = "Ready" if ready == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = [
        k.split("/", 1)[1]
        for k in (node["metadata"].get("labels") or {})
        if k.startswith("node-role.kubernetes.io/")
    ]
    return [
        node["metadata"]["name"],
        status,
        ",".join(roles) or "<none>",
        human_age(node["metadata"].get("creationTimestamp")),
        ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
    ]


def _age(obj: dict[str, Any]) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _condition_status(obj: dict[str, Any], kind: str) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status", ""))
    return ""


def _secret_row(secret: dict[str, Any]) -> Row:
    return [
        secret["metadata"]["name"],
        secret.get("type", "Opaque"),
        len(secret.get("data") or {}),
        _age(secret),
    ]


def _configmap_row(cm: dict[str, Any]) -> Row:
    count = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [cm["metadata"]["name"], count, _age(cm)]


def _netpol_row(policy: dict[str, Any]) -> Row:
    selector = selector_to_string((policy.get("spec") or {}).get("podSelector"))
    return [policy["metadata"]["name"], selector or "<none>", _age(policy)]


def _ingress_row(ing: dict[str, Any]) -> Row:
    spec = ing.get("spec") or {}
    hosts = [r.get("host") or "*" for r in spec.get("rules") or []]
    addresses = [
        a.get("ip") or a.get("hostname") or ""
        for a in ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ]
    return [
        ing["metadata"]["name"],
        spec.get("ingressClassName") or "<none>",
        ",".join(hosts) or "*",
        ",".join(addresses),
        "80, 443" if spec.get("tls") else "80",
        _age(ing),
    ]


def _hpa_row(hpa: dict[str, Any]) -> Row:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    target = spec.get("scaleTargetRef") or {}
    cpu = spec.get("targetCPUUtilizationPercentage")
    current = status.get("currentCPUUtilizationPercentage")
    targets = (
        f"cpu: {current if current is not None else '<unknown>'}%/{cpu}%"
        if cpu is not None
        else "<none>"
    )
    return [
        hpa["metadata"]["name"],
        f"{target.get('kind', '')}/{target.get('name', '')}",
        targets,
        spec.get("minReplicas", 1),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        _age(hpa),
    ]


def _httproute_row(route: dict[str, Any]) -> Row:
    hosts = (route.get("spec") or {}).get("hostnames")
    return [route["metadata"]["name"], json.dumps(hosts) if hosts else "", _age(route)]


def _gateway_row(gw: dict[str, Any]) -> Row:
    addresses = [a.get("value", "") for a in (gw.get("status") or {}).get("addresses") or []]
    return [
        gw["metadata"]["name"],
        (gw.get("spec") or {}).get("gatewayClassName", ""),
        ",".join(addresses),
        _condition_status(gw, "Programmed"),
        _age(gw),
    ]


def _gatewayclass_row(gc: dict[str, Any]) -> Row:
    spec = gc.get("spec") or {}
    return [
        gc["metadata"]["name"],
        spec.get("controllerName", ""),
        _condition_status(gc, "Accepted"),
        _age(gc),
        spec.get("description", ""),
    ]


def _default_row(obj: dict[str, Any]) -> Row:
    return [obj["metadata"]["name"], human_age(obj["metadata"].get("creationTimestamp"))]


_TABLES: dict[str, tuple[list[dict[str, Any]], Callable[[dict[str, Any]], Row]]] = {
    "pods": (
        [
            _col("Name", fmt="name"),
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "string"),
            _col("Age"),
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_row,
    ),
    "deployments": (
        [
            _col("Name", fmt="name"),
            _col("Ready"),
            _col("Up-to-date", "integer"),
            _col("Available", "integer"),
            _col("Age"),
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _deployment_row,
    ),
    "replicasets": (
        [
            _col("Name", fmt="name"),
            _col("Desired", "integer"),
            _col("Current", "integer"),
            _col("Ready", "integer"),
            _col("Age"),
        ],
        _replicaset_row,
    ),
    "services": (
        [
            _col("Name", fmt="name"),
            _col("Type"),
            _col("Cluster-IP"),
            _col("External-IP"),
            _col("Port(s)"),
            _col("Age"),
            _col("Selector", priority=1),
        ],
        _service_row,
    ),
    "namespaces": ([_col("Name", fmt="name"), _col("Status"), _col("Age")], _namespace_row),
    "nodes": (
        [_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version")],
        _node_row,
    ),
    "events": (
        [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
        _event_row,
    ),
    "secrets": (
        [_col("Name", fmt="name"), _col("Type"), _col("Data", "integer"), _col("Age")],
        _secret_row,
    ),
    "configmaps": (
        [_col("Name", fmt="name"), _col("Data", "integer"), _col("Age")],
        _configmap_row,
    ),
    "networkpolicies": (
        [_col("Name", fmt="name"), _col("Pod-Selector"), _col("Age")],
        _netpol_row,
    ),
    "ingresses": (
        [
            _col("Name", fmt="name"),
            _col("Class"),
            _col("Hosts"),
            _col("Address"),
            _col("Ports"),
            _col("Age"),
        ],
        _ingress_row,
    ),
    "horizontalpodautoscalers": (
        [
            _col("Name", fmt="name"),
            _col("Reference"),
            _col("Targets"),
            _col("MinPods", "integer"),
            _col("MaxPods", "integer"),
            _col("Replicas", "integer"),
            _col("Age"),
        ],
        _hpa_row,
    ),
    "httproutes": (
        [_col("Name", fmt="name"), _col("Hostnames"), _col("Age", "date")],
        _httproute_row,
    ),
    "gateways": (
        [
            _col("Name", fmt="name"),
            _col("Class"),
            _col("Address"),
            _col("Programmed"),
            _col("Age", "date"),
        ],
        _gateway_row,
    ),
    "gatewayclasses": (
        [
            _col("Name", fmt="name"),
            _col("Controller"),
            _col("Accepted"),
            _col("Age", "date"),
            _col("Description", priority=1),
        ],
        _gatewayclass_row,
    ),
}


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}


def table(
    plural: str, objects: list[dict[str, Any]], resource_version: str | None
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `objects` (rows carry their metadata)."""
    columns, render = _TABLES.get(plural, ([_col("Name", fmt="name"), _col("Age")], _default_row))
    body: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version} if resource_version else {},
        "columnDefinitions": columns,
        "rows": [{"cells": render(obj), "object": _partial(obj)} for obj in objects],
    }
    return body


def wants_table(accept: str) -> bool:
    """Whether the Accept header prefers a Table (kubectl puts it first)."""
    first = accept.split(",")[0] if accept else ""
    return "as=Table" in first
