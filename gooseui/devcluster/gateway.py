"""Gateway API: the CRDs' defaulting and validation, and a gateway controller.

With EXPOSURE=httproute the console creates an HTTPRoute and reads whether the gateway
accepted it. On a real cluster that status is written by the controller that owns the
Gateway's GatewayClass, and by nobody when the Gateway does not exist; a route that does
not fit the Gateway's listeners (namespace not allowed, no hostname intersection, a
sectionName or port no listener has) is refused with `Accepted=False`, and a missing
backend Service gives `ResolvedRefs=False`. `GatewayController` writes exactly those
conditions (Envoy Gateway's wording) as controller `CONTROLLER_NAME`, for every
GatewayClass whose `spec.controllerName` is that name; the simulator bootstraps one
GatewayClass, `GATEWAY_CLASS`. It re-evaluates when routes, gateways, gateway classes,
namespaces, Services or (for HTTPS listeners) Secrets change. There is no data plane: the
simulated gateway programs nothing that carries traffic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .resources import (
    GATEWAYCLASSES,
    GATEWAYS,
    HTTPROUTES,
    NAMESPACES,
    SECRETS,
    SERVICES,
)
from .selectors import selector_object_matches
from .store import Change, Obj
from .util import now_iso
from .workqueue import WorkQueue

if TYPE_CHECKING:
    from .registry import Registry

CONTROLLER_NAME = "gooseui.io/simulated-gateway"
GATEWAY_CLASS = "gooseui-simulated"
GROUP = "gateway.networking.k8s.io"
MANAGER = "gooseui-simulated-gateway"
_EPOCH = "1970-01-01T00:00:00Z"
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ROUTE_PROTOCOLS = ("HTTP", "HTTPS")

Cause = tuple[str, str, str]
Ref = tuple[str, str]  # (namespace, name)


# ---------------------------------------------------------------------- CRD defaults


def _pending(kinds: Iterable[str]) -> list[Obj]:
    return [
        {
            "type": kind,
            "status": "Unknown",
            "reason": "Pending",
            "message": "Waiting for controller",
            "lastTransitionTime": _EPOCH,
        }
        for kind in kinds
    ]


def default_gateway(obj: Obj) -> None:
    """The Gateway CRD's schema defaults (allowedRoutes, the pending status)."""
    spec = obj.setdefault("spec", {})
    for listener in spec.get("listeners") or []:
        if isinstance(listener, dict):
            allowed = listener.setdefault("allowedRoutes", {})
            if isinstance(allowed, dict):
                allowed.setdefault("namespaces", {"from": "Same"})
                if isinstance(allowed["namespaces"], dict):
                    allowed["namespaces"].setdefault("from", "Same")
    status = obj.get("status")
    if not status:
        obj["status"] = {"conditions": _pending(("Accepted", "Programmed"))}


def default_gateway_class(obj: Obj) -> None:
    if not obj.get("status"):
        obj["status"] = {"conditions": _pending(("Accepted",))}


def default_route(obj: Obj) -> None:
    """The HTTPRoute CRD's schema defaults (parentRef and backendRef group/kind, weight,
    the catch-all match)."""
    spec = obj.setdefault("spec", {})
    for ref in spec.get("parentRefs") or []:
        if isinstance(ref, dict):
            ref.setdefault("group", GROUP)
            ref.setdefault("kind", "Gateway")
    rules = spec.setdefault("rules", [{}])
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        rule.setdefault("matches", [{"path": {"type": "PathPrefix", "value": "/"}}])
        for match in rule.get("matches") or []:
            if isinstance(match, dict) and isinstance(match.get("path"), dict):
                match["path"].setdefault("type", "PathPrefix")
                match["path"].setdefault("value", "/")
        for backend in rule.get("backendRefs") or []:
            if isinstance(backend, dict):
                backend.setdefault("group", "")
                backend.setdefault("kind", "Service")
                backend.setdefault("weight", 1)


# ---------------------------------------------------------------------- CRD validation


def _cel(where: str, message: str, kind: str = "object") -> Cause:
    return ("FieldValueInvalid", where, f'Invalid value: "{kind}": {message}')


def validate_gateway_class(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    name = spec.get("controllerName")
    if not name:
        return [("FieldValueRequired", "spec.controllerName", "Required value")]
    if old is not None and (old.get("spec") or {}).get("controllerName") != name:
        return [
            (
                "FieldValueInvalid",
                "spec.controllerName",
                f"Invalid value: {json.dumps(name)}: Value is immutable",
            )
        ]
    return []


def validate_gateway(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if not spec.get("gatewayClassName"):
        causes.append(("FieldValueRequired", "spec.gatewayClassName", "Required value"))
    listeners = spec.get("listeners")
    if not isinstance(listeners, list) or not listeners:
        causes.append(("FieldValueRequired", "spec.listeners", "Required value"))
        return causes
    if len(listeners) > 64:
        causes.append(
            (
                "FieldValueTooMany",
                "spec.listeners",
                f"Too many: {len(listeners)}: must have at most 64 items",
            )
        )
    seen: dict[str, int] = {}
    combos: set[tuple[Any, Any, Any]] = set()
    for n, listener in enumerate(listeners):
        where = f"spec.listeners[{n}]"
        if not isinstance(listener, dict):
            causes.append(("FieldValueInvalid", where, "Invalid value: must be an object"))
            continue
        name = listener.get("name")
        if not name:
            causes.append(("FieldValueRequired", f"{where}.name", "Required value"))
        elif name in seen:
            causes.append(
                (
                    "FieldValueDuplicate",
                    where,
                    'Duplicate value: map[string]interface {}{"name":' + json.dumps(name) + "}",
                )
            )
        else:
            seen[name] = n
        port = listener.get("port")
        if port is None:
            causes.append(("FieldValueRequired", f"{where}.port", "Required value"))
        elif not isinstance(port, int) or not 0 < port < 65536:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.port",
                    f"Invalid value: {port}: {where}.port in body should be less than or "
                    "equal to 65535",
                )
            )
        protocol = listener.get("protocol")
        if not protocol:
            causes.append(("FieldValueRequired", f"{where}.protocol", "Required value"))
        hostname = listener.get("hostname")
        if hostname is not None and not _HOSTNAME.match(str(hostname)):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.hostname",
                    f"Invalid value: {json.dumps(hostname)}: {where}.hostname in body should match "
                    f"'{_HOSTNAME.pattern}'",
                )
            )
        if protocol in ("TCP", "UDP") and hostname:
            causes.append(
                _cel(
                    "spec.listeners",
                    "hostname must not be specified for protocols ['TCP', 'UDP']",
                    "array",
                )
            )
        if protocol in ("HTTP", "TCP", "UDP") and listener.get("tls") is not None:
            causes.append(
                _cel(
                    "spec.listeners",
                    "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
                    "array",
                )
            )
        if protocol == "HTTPS" and listener.get("tls") is None:
            causes.append(
                _cel("spec.listeners", "tls must be specified for protocols ['HTTPS']", "array")
            )
        combo = (port, protocol, hostname or "")
        if combo in combos:
            causes.append(
                _cel(
                    "spec.listeners",
                    "Combination of port, protocol and hostname must be unique for each listener",
                    "array",
                )
            )
        combos.add(combo)
        namespaces = ((listener.get("allowedRoutes") or {}).get("namespaces")) or {}
        origin = namespaces.get("from", "Same")
        if origin not in ("All", "Same", "Selector"):
            causes.append(
                (
                    "FieldValueNotSupported",
                    f"{where}.allowedRoutes.namespaces.from",
                    f"Unsupported value: {json.dumps(origin)}: supported values: "
                    '"All", "Selector", "Same"',
                )
            )
        elif origin == "Selector" and not namespaces.get("selector"):
            causes.append(
                _cel(
                    f"{where}.allowedRoutes.namespaces",
                    "selector must be specified when 'from' is set to 'Selector'",
                )
            )
    return causes


def validate_route(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if len(spec.get("parentRefs") or []) > 32:
        causes.append(
            ("FieldValueTooMany", "spec.parentRefs", "Too many: must have at most 32 items")
        )
    for n, host in enumerate(spec.get("hostnames") or []):
        if not isinstance(host, str) or not _HOSTNAME.match(host):
            where = f"spec.hostnames[{n}]"
            causes.append(
                (
                    "FieldValueInvalid",
                    where,
                    f"Invalid value: {json.dumps(host)}: {where} in body should match "
                    f"'{_HOSTNAME.pattern}'",
                )
            )
    for r, rule in enumerate(spec.get("rules") or []):
        if not isinstance(rule, dict):
            continue
        for m, match in enumerate(rule.get("matches") or []):
            path = (match or {}).get("path") or {}
            if path.get("type", "PathPrefix") in ("Exact", "PathPrefix") and not str(
                path.get("value", "/")
            ).startswith("/"):
                causes.append(
                    _cel(
                        f"spec.rules[{r}].matches[{m}].path",
                        "value must be an absolute path and start with '/' when type one of "
                        "['Exact', 'PathPrefix']",
                    )
                )
        for b, backend in enumerate(rule.get("backendRefs") or []):
            if not isinstance(backend, dict):
                continue
            if not backend.get("name"):
                causes.append(
                    (
                        "FieldValueRequired",
                        f"spec.rules[{r}].backendRefs[{b}].name",
                        "Required value",
                    )
                )
            if (
                backend.get("group", "") == ""
                and backend.get("kind", "Service") == "Service"
                and backend.get("port") is None
            ):
                causes.append(
                    _cel(
                        f"spec.rules[{r}].backendRefs[{b}]", "Must have port for Service reference"
                    )
                )
    return causes


# ---------------------------------------------------------------------- matching


def _hosts_match(listener: str, route: str) -> bool:
    if listener == route:
        return True
    if listener.startswith("*."):
        suffix = listener[1:]
        if route.startswith("*."):
            return route.endswith(suffix) or listener.endswith(route[1:])
        return route.endswith(suffix) and len(route) > len(suffix)
    if route.startswith("*."):
        return listener.endswith(route[1:]) and len(listener) > len(route) - 1
    return False


def hostnames_intersect(listener_host: str | None, route_hosts: list[str]) -> bool:
    """Gateway API hostname intersection (either side may be absent or a wildcard)."""
    if not listener_host or not route_hosts:
        return True
    return any(_hosts_match(listener_host, host) for host in route_hosts)


def refers_to(ref: Obj, route_ns: str, gateway: Ref) -> bool:
    return (
        ref.get("group", GROUP) == GROUP
        and ref.get("kind", "Gateway") == "Gateway"
        and (ref.get("namespace") or route_ns, ref.get("name", "")) == gateway
    )


def _conditions(old: list[Obj], new: list[Obj]) -> list[Obj]:
    """Keep lastTransitionTime of a condition whose status did not change."""
    before = {c.get("type"): c for c in old or []}
    out = []
    for cond in new:
        prev = before.get(cond["type"])
        if prev is not None and prev.get("status") == cond["status"]:
            cond = {
                **cond,
                "lastTransitionTime": prev.get("lastTransitionTime", cond["lastTransitionTime"]),
            }
        out.append(cond)
    return out


def _cond(kind: str, ok: bool, reason: str, message: str, generation: int, now: str) -> Obj:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now,
    }


class GatewayController:
    """Writes GatewayClass, Gateway and HTTPRoute status as a gateway implementation does."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.queue: WorkQueue[tuple[str, str, str]] = WorkQueue("gateway-api", self.reconcile)
        # who refers to what, so a change re-evaluates only the routes it can affect
        self._route_gateways: dict[Ref, set[Ref]] = {}
        self._route_backends: dict[Ref, set[Ref]] = {}
        self._routes_of_gateway: dict[Ref, set[Ref]] = {}
        self._routes_of_backend: dict[Ref, set[Ref]] = {}
        self._addresses: dict[str, str] = {}  # gateway uid -> its address

    # ------------------------------------------------------------------ indexes

    def _index_route(self, route: Ref, obj: Obj | None) -> set[Ref]:
        """Re-index one route's references; returns the gateways it referred to or refers to."""
        before = self._route_gateways.pop(route, set())
        for gw in before:
            self._routes_of_gateway.get(gw, set()).discard(route)
        for svc in self._route_backends.pop(route, set()):
            self._routes_of_backend.get(svc, set()).discard(route)
        if obj is None:
            return before
        spec = obj.get("spec") or {}
        gateways = {
            (ref.get("namespace") or route[0], ref.get("name", ""))
            for ref in spec.get("parentRefs") or []
            if isinstance(ref, dict)
            and ref.get("group", GROUP) == GROUP
            and ref.get("kind", "Gateway") == "Gateway"
        }
        backends = {
            (b.get("namespace") or route[0], b.get("name", ""))
            for rule in spec.get("rules") or []
            if isinstance(rule, dict)
            for b in rule.get("backendRefs") or []
            if isinstance(b, dict)
        }
        self._route_gateways[route] = gateways
        self._route_backends[route] = backends
        for gw in gateways:
            self._routes_of_gateway.setdefault(gw, set()).add(route)
        for svc in backends:
            self._routes_of_backend.setdefault(svc, set()).add(route)
        return before | gateways

    def on_change(self, change: Change) -> None:
        obj = change.obj
        meta = obj.get("metadata", {})
        ident: Ref = (meta.get("namespace", ""), meta.get("name", ""))
        old_meta = (change.old or {}).get("metadata", {})
        if change.key == HTTPROUTES.key:
            if change.type == "MODIFIED" and old_meta.get("generation") == meta.get("generation"):
                return  # a status write (ours or another controller's)
            gone = change.type == "DELETED"
            for gw in self._index_route(ident, None if gone else obj):
                self.queue.add(("gateway", *gw))
            if not gone:
                self.queue.add(("route", *ident))
        elif change.key == GATEWAYS.key:
            if change.type == "MODIFIED" and old_meta.get("generation") == meta.get("generation"):
                return
            if change.type == "DELETED":
                self._addresses.pop(meta.get("uid", ""), None)
            else:
                self.queue.add(("gateway", *ident))
            for route in self._routes_of_gateway.get(ident, ()):
                self.queue.add(("route", *route))
        elif change.key == GATEWAYCLASSES.key:
            if change.type == "MODIFIED" and old_meta.get("generation") == meta.get("generation"):
                return
            if change.type != "DELETED":
                self.queue.add(("class", "", ident[1]))
            for gw in self.registry.store.list(GATEWAYS.key):
                if (gw.get("spec") or {}).get("gatewayClassName") == ident[1]:
                    gw_meta = gw["metadata"]
                    self.queue.add(("gateway", gw_meta.get("namespace", ""), gw_meta["name"]))
                    for route in self._routes_of_gateway.get(
                        (gw_meta.get("namespace", ""), gw_meta["name"]), ()
                    ):
                        self.queue.add(("route", *route))
        elif change.key == NAMESPACES.key:
            if change.type == "MODIFIED" and old_meta.get("labels") == meta.get("labels"):
                return
            name = ident[1]
            for route in self.registry.store.list(HTTPROUTES.key, name):
                self.queue.add(("route", name, route["metadata"]["name"]))
                for gw in self._route_gateways.get((name, route["metadata"]["name"]), ()):
                    self.queue.add(("gateway", *gw))
        elif change.key == SERVICES.key:
            if change.type == "MODIFIED" and ((change.old or {}).get("spec") or {}).get(
                "ports"
            ) == (obj.get("spec") or {}).get("ports"):
                return
            for route in self._routes_of_backend.get(ident, ()):
                self.queue.add(("route", *route))
        elif change.key == SECRETS.key:
            for gw in self.registry.store.list(GATEWAYS.key, ident[0]):
                self.queue.add(("gateway", ident[0], gw["metadata"]["name"]))

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, item: tuple[str, str, str]) -> None:
        kind, ns, name = item
        if kind == "route":
            self._reconcile_route(ns, name)
        elif kind == "gateway":
            self._reconcile_gateway(ns, name)
        else:
            self._reconcile_class(name)

    def _class_is_ours(self, class_name: str) -> bool:
        cls = self.registry.find(GATEWAYCLASSES, "", class_name)
        return cls is not None and (cls.get("spec") or {}).get("controllerName") == CONTROLLER_NAME

    def _gateway(self, ns: str, name: str) -> Obj | None:
        """The Gateway if it exists and our controller owns its class."""
        gw = self.registry.find(GATEWAYS, ns, name)
        if gw is None or not self._class_is_ours(
            (gw.get("spec") or {}).get("gatewayClassName", "")
        ):
            return None
        return gw

    def _reconcile_class(self, name: str) -> None:
        cls = self.registry.find(GATEWAYCLASSES, "", name)
        if cls is None or (cls.get("spec") or {}).get("controllerName") != CONTROLLER_NAME:
            return
        generation = int(cls["metadata"].get("generation", 1))
        now = now_iso()

        def change(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            status["conditions"] = _conditions(
                status.get("conditions") or [],
                [
                    _cond(
                        "Accepted",
                        True,
                        "Accepted",
                        f"Valid GatewayClass, handled by {CONTROLLER_NAME}",
                        generation,
                        now,
                    )
                ],
            )

        self.registry.mutate(GATEWAYCLASSES, "", name, change, MANAGER, track=False)

    def _namespace_allowed(self, listener: Obj, gateway_ns: str, route_ns: str) -> bool:
        namespaces = (listener.get("allowedRoutes") or {}).get("namespaces") or {}
        origin = namespaces.get("from", "Same")
        if origin == "All":
            return True
        if origin == "Same":
            return route_ns == gateway_ns
        if origin == "Selector":
            ns = self.registry.find(NAMESPACES, "", route_ns)
            labels = (ns or {}).get("metadata", {}).get("labels") or {}
            return ns is not None and selector_object_matches(
                namespaces.get("selector") or {}, labels
            )
        return False

    @staticmethod
    def _kind_allowed(listener: Obj) -> bool:
        if listener.get("protocol") not in _ROUTE_PROTOCOLS:
            return False
        kinds = (listener.get("allowedRoutes") or {}).get("kinds")
        if not kinds:
            return True
        return any(k.get("group", GROUP) == GROUP and k.get("kind") == "HTTPRoute" for k in kinds)

    def evaluate(self, route: Obj, ref: Obj, gateway: Obj) -> tuple[bool, str, str, list[str]]:
        """(accepted, reason, message, names of the listeners the route attaches to)."""
        route_ns = route["metadata"].get("namespace", "")
        gateway_ns = gateway["metadata"].get("namespace", "")
        listeners = [
            lst
            for lst in (gateway.get("spec") or {}).get("listeners") or []
            if isinstance(lst, dict)
        ]
        if ref.get("sectionName"):
            listeners = [lst for lst in listeners if lst.get("name") == ref["sectionName"]]
        if ref.get("port") is not None:
            listeners = [lst for lst in listeners if lst.get("port") == ref["port"]]
        if not listeners:
            return False, "NoMatchingParent", "No listeners match this parent ref", []
        allowed = [
            lst
            for lst in listeners
            if self._kind_allowed(lst) and self._namespace_allowed(lst, gateway_ns, route_ns)
        ]
        if not allowed:
            return (
                False,
                "NotAllowedByListeners",
                "No listeners included by this parent ref allowed this attachment.",
                [],
            )
        hosts = [h for h in (route.get("spec") or {}).get("hostnames") or [] if isinstance(h, str)]
        matching = [lst for lst in allowed if hostnames_intersect(lst.get("hostname"), hosts)]
        if not matching:
            return (
                False,
                "NoMatchingListenerHostname",
                "There were no hostname intersections between the HTTPRoute and this parent "
                "ref's Listener(s).",
                [],
            )
        return True, "Accepted", "Route is accepted", [lst.get("name", "") for lst in matching]

    def _resolve_backends(self, route: Obj) -> tuple[bool, str, str]:
        route_ns = route["metadata"].get("namespace", "")
        for r, rule in enumerate((route.get("spec") or {}).get("rules") or []):
            for b, backend in enumerate((rule or {}).get("backendRefs") or []):
                where = f"Failed to process route rule {r} backendRef {b}"
                group, kind = backend.get("group", ""), backend.get("kind", "Service")
                name = backend.get("name", "")
                if group != "" or kind != "Service":
                    return (
                        False,
                        "InvalidKind",
                        f"{where}: {kind}.{group or 'core'} is not supported.",
                    )
                ns = backend.get("namespace") or route_ns
                if ns != route_ns:
                    return (
                        False,
                        "RefNotPermitted",
                        f"{where}: Backend ref to Service {ns}/{name} not permitted by any "
                        "ReferenceGrant.",
                    )
                svc = self.registry.find(SERVICES, ns, name)
                if svc is None:
                    return False, "BackendNotFound", f"{where}: Service {ns}/{name} not found."
                ports = [p.get("port") for p in (svc.get("spec") or {}).get("ports") or []]
                if backend.get("port") not in ports:
                    return (
                        False,
                        "BackendNotFound",
                        f"{where}: port {backend.get('port')} not found on Service {ns}/{name}.",
                    )
        return True, "ResolvedRefs", "Resolved all the Object references for the Route"

    def _reconcile_route(self, ns: str, name: str) -> None:
        route = self.registry.find(HTTPROUTES, ns, name)
        if route is None:
            return
        generation = int(route["metadata"].get("generation", 1))
        now = now_iso()
        mine: list[Obj] = []
        resolved: tuple[bool, str, str] | None = None
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            if (
                not isinstance(ref, dict)
                or ref.get("group", GROUP) != GROUP
                or ref.get("kind", "Gateway") != "Gateway"
            ):
                continue
            gateway = self._gateway(ref.get("namespace") or ns, ref.get("name", ""))
            if gateway is None:
                continue  # nobody owns this parent: no status at all, as on a real cluster
            accepted, reason, message, _ = self.evaluate(route, ref, gateway)
            if resolved is None:
                resolved = self._resolve_backends(route)
            mine.append(
                {
                    "parentRef": dict(ref),
                    "controllerName": CONTROLLER_NAME,
                    "conditions": [
                        _cond("Accepted", accepted, reason, message, generation, now),
                        _cond(
                            "ResolvedRefs", resolved[0], resolved[1], resolved[2], generation, now
                        ),
                    ],
                }
            )

        def change(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            current = status.get("parents") or []
            previous = {
                json.dumps(p.get("parentRef"), sort_keys=True): p
                for p in current
                if p.get("controllerName") == CONTROLLER_NAME
            }
            for entry in mine:
                prev = previous.get(json.dumps(entry["parentRef"], sort_keys=True))
                if prev is not None:
                    entry["conditions"] = _conditions(
                        prev.get("conditions") or [], entry["conditions"]
                    )
            others = [p for p in current if p.get("controllerName") != CONTROLLER_NAME]
            status["parents"] = (others + mine)[:32]

        current = (route.get("status") or {}).get("parents") or []
        if not mine and not any(p.get("controllerName") == CONTROLLER_NAME for p in current):
            return
        self.registry.mutate(HTTPROUTES, ns, name, change, MANAGER, track=False)

    def _address(self, gateway: Obj) -> str:
        uid = gateway["metadata"].get("uid", "")
        if uid not in self._addresses:
            used = set(self._addresses.values())
            n = 200
            while f"172.18.255.{n}" in used and n < 254:
                n += 1
            self._addresses[uid] = f"172.18.255.{n}"
        return self._addresses[uid]

    def _listener_status(
        self, gateway: Obj, listener: Obj, attached: int, generation: int, now: str
    ) -> tuple[Obj, bool]:
        protocol = listener.get("protocol")
        ns = gateway["metadata"].get("namespace", "")
        supported = protocol in _ROUTE_PROTOCOLS
        conditions: list[Obj] = []
        valid = supported
        refs_ok, refs_reason, refs_message = (
            True,
            "ResolvedRefs",
            "Resolved all the Object references for the Listener",
        )
        if not supported:
            conditions.append(
                _cond(
                    "Accepted",
                    False,
                    "UnsupportedProtocol",
                    f"Protocol {protocol} is not supported.",
                    generation,
                    now,
                )
            )
        else:
            conditions.append(
                _cond("Accepted", True, "Accepted", "Listener is accepted", generation, now)
            )
        if protocol == "HTTPS":
            for ref in (listener.get("tls") or {}).get("certificateRefs") or []:
                secret_ns = ref.get("namespace") or ns
                secret = self.registry.find(SECRETS, secret_ns, ref.get("name", ""))
                if ref.get("kind", "Secret") != "Secret" or ref.get("group", "") != "":
                    refs_ok, refs_reason = False, "InvalidCertificateRef"
                    refs_message = (
                        f"Certificate ref to {ref.get('kind')} {ref.get('name')} is not supported."
                    )
                elif secret_ns != ns:
                    refs_ok, refs_reason = False, "RefNotPermitted"
                    refs_message = (
                        f"Certificate ref to secret {secret_ns}/{ref.get('name')} not permitted "
                        "by any ReferenceGrant."
                    )
                elif secret is None:
                    refs_ok, refs_reason = False, "InvalidCertificateRef"
                    refs_message = f"Secret {secret_ns}/{ref.get('name')} does not exist."
                elif secret.get("type") != "kubernetes.io/tls":
                    refs_ok, refs_reason = False, "InvalidCertificateRef"
                    refs_message = (
                        f"Secret {secret_ns}/{ref.get('name')} must be of type kubernetes.io/tls."
                    )
                if not refs_ok:
                    break
        valid = valid and refs_ok
        conditions.append(
            _cond("ResolvedRefs", refs_ok, refs_reason, refs_message, generation, now)
        )
        conditions.append(
            _cond("Conflicted", False, "NoConflicts", "No conflicts", generation, now)
        )
        conditions.append(
            _cond(
                "Programmed",
                valid,
                "Programmed" if valid else "Invalid",
                "Sending translated listener configuration to the data plane"
                if valid
                else "Listener is invalid, see other Conditions for details.",
                generation,
                now,
            )
        )
        kinds = [{"group": GROUP, "kind": "HTTPRoute"}] if supported else []
        return {
            "name": listener.get("name", ""),
            "supportedKinds": kinds,
            "attachedRoutes": attached if valid else 0,
            "conditions": conditions,
        }, valid

    def _reconcile_gateway(self, ns: str, name: str) -> None:
        gateway = self._gateway(ns, name)
        if gateway is None:
            return
        generation = int(gateway["metadata"].get("generation", 1))
        now = now_iso()
        attached: dict[str, int] = {}
        for route_ref in sorted(self._routes_of_gateway.get((ns, name), ())):
            route = self.registry.find(HTTPROUTES, *route_ref)
            if route is None:
                continue
            names: set[str] = set()
            for ref in (route.get("spec") or {}).get("parentRefs") or []:
                if isinstance(ref, dict) and refers_to(ref, route_ref[0], (ns, name)):
                    accepted, _, _, listeners = self.evaluate(route, ref, gateway)
                    if accepted:
                        names.update(listeners)
            for listener_name in names:
                attached[listener_name] = attached.get(listener_name, 0) + 1
        listeners = []
        valid_count = 0
        for listener in (gateway.get("spec") or {}).get("listeners") or []:
            status, valid = self._listener_status(
                gateway, listener, attached.get(listener.get("name", ""), 0), generation, now
            )
            listeners.append(status)
            valid_count += valid
        total = len(listeners)
        address = self._address(gateway)
        if valid_count == total:
            accepted = _cond(
                "Accepted",
                True,
                "Accepted",
                f"The Gateway has been scheduled by {CONTROLLER_NAME}",
                generation,
                now,
            )
        else:
            accepted = _cond(
                "Accepted",
                valid_count > 0,
                "ListenersNotValid",
                f"{total - valid_count} of {total} listeners are not valid; see the "
                "listeners' conditions",
                generation,
                now,
            )
        programmed = _cond(
            "Programmed",
            valid_count > 0,
            "Programmed" if valid_count else "Invalid",
            "Address assigned to the Gateway, 1/1 simulated gateway replicas available"
            if valid_count
            else "No valid listeners",
            generation,
            now,
        )

        def change(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            status["addresses"] = [{"type": "IPAddress", "value": address}] if valid_count else []
            old_conditions = [
                c for c in status.get("conditions") or [] if c.get("reason") != "Pending"
            ]
            status["conditions"] = _conditions(old_conditions, [accepted, programmed])
            before = {lst.get("name"): lst for lst in status.get("listeners") or []}
            for lst in listeners:
                prev = before.get(lst["name"])
                if prev is not None:
                    lst["conditions"] = _conditions(prev.get("conditions") or [], lst["conditions"])
            status["listeners"] = listeners
            if not status["addresses"]:
                status.pop("addresses")

        self.registry.mutate(GATEWAYS, ns, name, change, MANAGER, track=False)

    def bootstrap(self) -> None:
        """The GatewayClass this controller serves, as installing a gateway controller adds one."""
        self.registry.create(
            GATEWAYCLASSES,
            "",
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "GatewayClass",
                "metadata": {"name": GATEWAY_CLASS},
                "spec": {
                    "controllerName": CONTROLLER_NAME,
                    "description": "The simulated cluster's gateway (status only, no data plane)",
                },
            },
            MANAGER,
        )
