"""NetworkPolicy: defaulting, validation, and the dataplane's admission decision.

The console's agents have no authentication; their only fence is the NetworkPolicy the
console applies. On AKS the API server's service proxy reaches a pod from a konnectivity
agent pod in `kube-system`, or (API Server VNet Integration, kubeadm, kind, k3s) from the
API server's host address, so a policy that forgets that source silently drops the
console's traffic. `admits` decides exactly as Kubernetes defines NetworkPolicy ingress
semantics, so the simulator drops what a real dataplane drops.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from .selectors import selector_object_matches

Cause = tuple[str, str, str]
Obj = dict[str, Any]


@dataclass(frozen=True)
class TrafficSource:
    """Where proxied traffic comes from: a pod (namespace, labels, IP) or a bare IP."""

    ip: str
    namespace: str | None = None  # None: not a pod (host network / outside the cluster)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None

    def describe(self) -> str:
        if self.is_pod:
            return f"pod in namespace {self.namespace} ({self.ip})"
        return f"ip {self.ip}"


KONNECTIVITY_IP = "10.244.0.250"
KONNECTIVITY_LABELS = {"k8s-app": "konnectivity-agent"}
DEFAULT_APISERVER_IP = "10.224.0.4"


def source_from(namespace: str | None = "kube-system", ip: str | None = None) -> TrafficSource:
    """The proxy's source: exactly one of a namespace (a konnectivity-like pod) or an IP."""
    if (namespace is None) == (ip is None):
        raise ValueError("give exactly one of namespace= or ip=")
    if namespace is not None:
        if not namespace:
            raise ValueError("namespace must not be empty")
        return TrafficSource(KONNECTIVITY_IP, namespace, dict(KONNECTIVITY_LABELS))
    assert ip is not None
    ipaddress.ip_address(ip)  # ValueError for a malformed address
    return TrafficSource(ip)


def parse_source(text: str) -> TrafficSource:
    """`namespace:kube-system` or `ip:10.224.0.4` (GOOSEUI_SIM_PROXY_SOURCE)."""
    kind, _, value = text.strip().partition(":")
    if kind == "namespace" and value:
        return source_from(namespace=value)
    if kind == "ip" and value:
        return source_from(namespace=None, ip=value)
    raise ValueError(f"proxy source must be 'namespace:<name>' or 'ip:<address>', got {text!r}")


# ---------------------------------------------------------------------- defaulting


def default_policy(obj: Obj) -> None:
    """SetDefaults_NetworkPolicy: policyTypes from the rules present, TCP for ports."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("podSelector", {})
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            if not isinstance(rule, dict):
                continue
            for port in rule.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


# ---------------------------------------------------------------------- validation


def _cidr_problem(value: Any) -> str | None:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
    if "/" not in str(value):
        return "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
    return None


def _validate_peer(peer: Any, where: str) -> list[Cause]:
    if not isinstance(peer, dict) or not any(
        peer.get(k) is not None for k in ("podSelector", "namespaceSelector", "ipBlock")
    ):
        return [("FieldValueRequired", where, "Required value: must specify a peer")]
    causes: list[Cause] = []
    block = peer.get("ipBlock")
    if block is not None:
        if peer.get("podSelector") is not None or peer.get("namespaceSelector") is not None:
            causes.append(
                (
                    "FieldValueForbidden",
                    where,
                    "Forbidden: may not specify both ipBlock and another peer",
                )
            )
        cidr = (block or {}).get("cidr")
        if not cidr:
            causes.append(("FieldValueRequired", f"{where}.ipBlock.cidr", "Required value"))
            return causes
        problem = _cidr_problem(cidr)
        if problem:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.ipBlock.cidr",
                    f"Invalid value: {json.dumps(cidr)}: {problem}",
                )
            )
            return causes
        network = ipaddress.ip_network(cidr, strict=False)
        for n, exc in enumerate(block.get("except") or []):
            spot = f"{where}.ipBlock.except[{n}]"
            problem = _cidr_problem(exc)
            if problem:
                causes.append(
                    ("FieldValueInvalid", spot, f"Invalid value: {json.dumps(exc)}: {problem}")
                )
                continue
            inner = ipaddress.ip_network(exc, strict=False)
            if (
                inner.version != network.version
                or not inner.subnet_of(network)  # type: ignore[arg-type]
                or inner.prefixlen <= network.prefixlen
            ):
                causes.append(
                    (
                        "FieldValueInvalid",
                        spot,
                        f"Invalid value: {json.dumps(exc)}: must be a strict subset of `cidr`",
                    )
                )
    return causes


def _validate_port(port: Any, where: str) -> list[Cause]:
    if not isinstance(port, dict):
        return [("FieldValueInvalid", where, "Invalid value: must be an object")]
    causes: list[Cause] = []
    protocol = port.get("protocol", "TCP")
    if protocol not in ("TCP", "UDP", "SCTP"):
        causes.append(
            (
                "FieldValueNotSupported",
                f"{where}.protocol",
                f"Unsupported value: {json.dumps(protocol)}: supported values: "
                '"TCP", "UDP", "SCTP"',
            )
        )
    number = port.get("port")
    end = port.get("endPort")
    if isinstance(number, int):
        if not 0 < number < 65536:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.port",
                    f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                )
            )
    elif number is not None and not isinstance(number, str):
        causes.append(("FieldValueInvalid", f"{where}.port", f"Invalid value: {number!r}"))
    if end is not None:
        if number is None:
            causes.append(
                (
                    "FieldValueRequired",
                    f"{where}.endPort",
                    "Required value: may not be specified when `port` is not specified",
                )
            )
        elif isinstance(number, str):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.endPort",
                    f"Invalid value: {end}: may not be specified when `port` is non-numeric",
                )
            )
        elif not isinstance(end, int) or end < number:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.endPort",
                    f"Invalid value: {end}: must be greater than or equal to `port`",
                )
            )
    return causes


def validate_policy(obj: Obj, old: Obj | None) -> list[Cause]:
    """The checks of ValidateNetworkPolicySpec that a manifest can trip over."""
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    for n, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Ingress", "Egress"):
            causes.append(
                (
                    "FieldValueNotSupported",
                    f"spec.policyTypes[{n}]",
                    f'Unsupported value: {json.dumps(kind)}: supported values: "Ingress", "Egress"',
                )
            )
    for direction, peers_field in (("ingress", "from"), ("egress", "to")):
        for r, rule in enumerate(spec.get(direction) or []):
            where = f"spec.{direction}[{r}]"
            if not isinstance(rule, dict):
                continue
            for p, peer in enumerate(rule.get(peers_field) or []):
                causes += _validate_peer(peer, f"{where}.{peers_field}[{p}]")
            for p, port in enumerate(rule.get("ports") or []):
                causes += _validate_port(port, f"{where}.ports[{p}]")
    return causes


# ---------------------------------------------------------------------- evaluation


def _in_block(ip: str, block: Obj) -> bool:
    try:
        address = ipaddress.ip_address(ip)
        if address not in ipaddress.ip_network(block.get("cidr", ""), strict=False):
            return False
        return not any(
            address in ipaddress.ip_network(exc, strict=False) for exc in block.get("except") or []
        )
    except ValueError:
        return False


def _peer_matches(
    peer: Obj, policy_namespace: str, source: TrafficSource, source_ns_labels: dict[str, str]
) -> bool:
    if peer.get("ipBlock") is not None:
        return _in_block(source.ip, peer["ipBlock"])
    if not source.is_pod:
        return False  # a host or external address is never selected by pod/namespace selectors
    ns_selector = peer.get("namespaceSelector")
    pod_selector = peer.get("podSelector")
    if ns_selector is not None:
        if not selector_object_matches(ns_selector, source_ns_labels):
            return False
    elif source.namespace != policy_namespace:
        return False  # podSelector alone: pods of the policy's own namespace
    if pod_selector is not None and not selector_object_matches(pod_selector, source.labels):
        return False
    return True


def named_port(pod: Obj, name: str, protocol: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name and port.get("protocol", "TCP") == protocol:
                return port.get("containerPort")
    return None


def _port_matches(rule_port: Obj, pod: Obj, port: int, protocol: str) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    wanted = rule_port.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str) and not wanted.isdigit():
        return named_port(pod, wanted, protocol) == port
    first = int(wanted)
    last = rule_port.get("endPort") or first
    return first <= port <= last


def selects(policy: Obj, pod: Obj) -> bool:
    """Whether an ingress-isolating policy applies to `pod`."""
    spec = policy.get("spec") or {}
    if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
        return False
    labels = pod.get("metadata", {}).get("labels") or {}
    return selector_object_matches(spec.get("podSelector") or {}, labels)


def admits(
    policies: list[Obj],
    pod: Obj,
    port: int,
    source: TrafficSource,
    source_ns_labels: dict[str, str],
    protocol: str = "TCP",
) -> bool:
    """Whether ingress to `pod`:`port` from `source` is allowed by its namespace's policies.

    No policy selecting the pod for Ingress: allowed. Otherwise allowed iff one rule of
    one selecting policy matches both the source (`from`, empty = anyone) and the port
    (`ports`, empty = every port); policies are additive, there is no deny rule.
    """
    isolating = [p for p in policies if selects(p, pod)]
    if not isolating:
        return True
    for policy in isolating:
        policy_ns = policy.get("metadata", {}).get("namespace", "")
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            peers = rule.get("from") or []
            if peers and not any(
                _peer_matches(peer, policy_ns, source, source_ns_labels) for peer in peers
            ):
                continue
            ports = rule.get("ports") or []
            if ports and not any(_port_matches(p, pod, port, protocol) for p in ports):
                continue
            return True
    return False
