"""Pod admission: Pod Security, LimitRange defaults and ResourceQuota enforcement.

The namespace's `pod-security.kubernetes.io/enforce` level (baseline, restricted)
rejects pods that break it; a LimitRange fills in container requests/limits before a
quota looks at the pod; a ResourceQuota rejects a pod that would exceed `pods` or a
compute total, or that does not state a resource the quota constrains. The messages
are the API server's own ("violates PodSecurity", "exceeded quota", "failed quota");
they reach the console as the Deployment condition ReplicaFailure/FailedCreate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import forbidden

_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_SUFFIX = {**_DECIMAL, "P": 1e15, "E": 1e18, **_BINARY}
_QUANTITY = re.compile(
    r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
)
COMPUTE = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory")


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "64Mi", "1") as a number; ValueError when malformed."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"invalid quantity {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2) or ""]


def format_quantity(resource: str, amount: float) -> str:
    """Render a quantity the way quota messages show it (cpu in cores/millicores)."""
    if resource.endswith("cpu"):
        milli = round(amount * 1000)
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    if resource.endswith("memory"):
        whole = round(amount)
        for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if whole and whole % size == 0:
                return f"{whole // size}{suffix}"
        return str(whole)
    return str(round(amount))


def apply_limit_ranges(pod: dict[str, Any], limit_ranges: Iterable[dict[str, Any]]) -> None:
    """Container resource defaulting (requests default to limits), then LimitRanger's
    `type: Container` `default`/`defaultRequest` for what is still missing (in place)."""
    items = [
        item
        for lr in limit_ranges
        for item in (lr.get("spec") or {}).get("limits") or []
        if item.get("type") == "Container"
    ]
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.setdefault("resources", {})
        for name, value in (resources.get("limits") or {}).items():
            resources.setdefault("requests", {}).setdefault(name, value)
        for item in items:
            default = item.get("default") or {}
            default_request = {**default, **(item.get("defaultRequest") or {})}
            if default:
                limits = resources.setdefault("limits", {})
                for name, value in default.items():
                    limits.setdefault(name, value)
            if default_request:
                requests = resources.setdefault("requests", {})
                for name, value in default_request.items():
                    requests.setdefault(name, value)


def pod_usage(pod: dict[str, Any]) -> dict[str, float]:
    """What one pod counts against a quota, by quota resource name."""
    usage = {"pods": 1.0}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for name in ("cpu", "memory"):
                value = (resources.get(kind) or {}).get(name)
                if value is None and kind == "requests":
                    value = (resources.get("limits") or {}).get(name)  # requests default to limits
                if value is None:
                    continue
                try:
                    amount = parse_quantity(value)
                except ValueError:
                    continue
                usage[f"{kind}.{name}"] = usage.get(f"{kind}.{name}", 0.0) + amount
                if kind == "requests":
                    usage[name] = usage.get(name, 0.0) + amount
    return usage


def check_quotas(
    pod: dict[str, Any], quotas: Iterable[dict[str, Any]], active_pods: Iterable[dict[str, Any]]
) -> None:
    """Raise 403 Forbidden when admitting `pod` would break a ResourceQuota."""
    name = pod["metadata"]["name"]
    requested = pod_usage(pod)
    used: dict[str, float] = {}
    for other in active_pods:
        for key, amount in pod_usage(other).items():
            used[key] = used.get(key, 0.0) + amount
    for quota in quotas:
        qname = quota["metadata"]["name"]
        hard = (quota.get("spec") or {}).get("hard") or {}
        constrained = {("pods" if k == "count/pods" else k): v for k, v in hard.items()}
        missing = sorted(k for k in constrained if k in COMPUTE and k not in requested)
        if missing:
            raise forbidden(
                "pods", "", name, f"failed quota: {qname}: must specify {','.join(missing)}"
            )
        over = []
        for key, limit in sorted(constrained.items()):
            if key not in requested:
                continue
            try:
                limited = parse_quantity(limit)
            except ValueError:
                continue
            if used.get(key, 0.0) + requested[key] > limited + 1e-9:
                over.append(key)
        if over:

            def show(values: dict[str, float], keys: list[str]) -> str:
                return ",".join(f"{k}={format_quantity(k, values.get(k, 0.0))}" for k in keys)

            limits = {k: parse_quantity(constrained[k]) for k in over}
            raise forbidden(
                "pods",
                "",
                name,
                f"exceeded quota: {qname}, requested: {show(requested, over)}, "
                f"used: {show(used, over)}, limited: {show(limits, over)}",
            )


def _names(containers: list[dict[str, Any]]) -> str:
    quoted = ", ".join(f'"{c.get("name", "")}"' for c in containers)
    return ("container " if len(containers) == 1 else "containers ") + quoted


def _pod_security_violations(pod: dict[str, Any], level: str) -> list[str]:
    """The Pod Security Standards checks the console's pods must pass (baseline, restricted)."""
    spec = pod.get("spec") or {}
    pod_ctx = spec.get("securityContext") or {}
    containers = [
        c
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
        if isinstance(c, dict)
    ]
    ctx = {id(c): c.get("securityContext") or {} for c in containers}
    found: list[str] = []
    host = [k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if host:
        found.append(f"host namespaces ({', '.join(f'{k}=true' for k in host)})")
    privileged = [c for c in containers if ctx[id(c)].get("privileged")]
    if privileged:
        found.append(
            f"privileged ({_names(privileged)} must not set securityContext.privileged=true)"
        )
    host_paths = [
        v.get("name", "")
        for v in spec.get("volumes") or []
        if isinstance(v, dict) and "hostPath" in v
    ]
    if host_paths:
        found.append("hostPath volumes (" + ", ".join(f'volume "{n}"' for n in host_paths) + ")")
    host_ports = [
        c for c in containers if any((p or {}).get("hostPort") for p in c.get("ports") or [])
    ]
    if host_ports:
        found.append(f"hostPort ({_names(host_ports)} uses hostPort)")
    if level != "restricted":
        return found
    escalating = [c for c in containers if ctx[id(c)].get("allowPrivilegeEscalation") is not False]
    if escalating:
        found.append(
            "allowPrivilegeEscalation != false "
            f"({_names(escalating)} must set securityContext.allowPrivilegeEscalation=false)"
        )
    unrestricted = [
        c
        for c in containers
        if "ALL" not in ((ctx[id(c)].get("capabilities") or {}).get("drop") or [])
        or set((ctx[id(c)].get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
    ]
    if unrestricted:
        found.append(
            f"unrestricted capabilities ({_names(unrestricted)} must set "
            'securityContext.capabilities.drop=["ALL"])'
        )
    root = [
        c
        for c in containers
        if ctx[id(c)].get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True
    ]
    if root:
        found.append(
            f"runAsNonRoot != true (pod or {_names(root)} must set "
            "securityContext.runAsNonRoot=true)"
        )
    uid_zero = [c for c in containers if ctx[id(c)].get("runAsUser", pod_ctx.get("runAsUser")) == 0]
    if uid_zero:
        found.append(f"runAsUser=0 (pod or {_names(uid_zero)} must not set runAsUser=0)")
    allowed = ("RuntimeDefault", "Localhost")
    unconfined = [
        c
        for c in containers
        if ((ctx[id(c)].get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type"))
        not in allowed
    ]
    if unconfined:
        found.append(
            f"seccompProfile (pod or {_names(unconfined)} must set "
            'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
        )
    return found


def check_pod_security(pod: dict[str, Any], namespace: dict[str, Any]) -> None:
    """Raise 403 when the namespace's `pod-security.kubernetes.io/enforce` level rejects `pod`."""
    labels = namespace.get("metadata", {}).get("labels") or {}
    level = labels.get("pod-security.kubernetes.io/enforce", "privileged")
    if level not in ("baseline", "restricted"):
        return
    violations = _pod_security_violations(pod, level)
    if violations:
        version = labels.get("pod-security.kubernetes.io/enforce-version", "latest")
        raise forbidden(
            "pods",
            "",
            pod["metadata"]["name"],
            f'violates PodSecurity "{level}:{version}": ' + ", ".join(violations),
        )
