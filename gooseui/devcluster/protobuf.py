"""Just enough of Kubernetes' protobuf encoding to read what kubectl sends that way.

kubectl's typed clients (`kubectl create namespace|deployment|service|secret|configmap`) POST bodies
as `application/vnd.kubernetes.protobuf` with no JSON fallback. The simulator decodes
the envelope (`k8s\\0` + runtime.Unknown) and the fields those commands set, and
answers JSON, which kubectl accepts. Other kinds get 415.
"""

from __future__ import annotations

import base64
from typing import Any

from .errors import ApiError

MAGIC = b"k8s\x00"
Fields = dict[int, list[Any]]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def parse(data: bytes) -> Fields:
    """Decode one message into {field number: [values]} (bytes for length-delimited)."""
    fields: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        elif wire == 1:
            value = data[pos : pos + 8]
            pos += 8
        elif wire == 5:
            value = data[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _str(fields: Fields, number: int) -> str | None:
    values = fields.get(number)
    return values[-1].decode() if values else None


def _strings(fields: Fields, number: int) -> list[str]:
    return [v.decode() for v in fields.get(number, [])]


def _string_map(fields: Fields, number: int) -> dict[str, str]:
    out = {}
    for entry in fields.get(number, []):
        kv = parse(entry)
        out[_str(kv, 1) or ""] = _str(kv, 2) or ""
    return out


def _object_meta(data: bytes) -> dict[str, Any]:
    fields = parse(data)
    meta: dict[str, Any] = {}
    for number, key in ((1, "name"), (2, "generateName"), (3, "namespace"), (6, "resourceVersion")):
        value = _str(fields, number)
        if value:
            meta[key] = value
    if labels := _string_map(fields, 11):
        meta["labels"] = labels
    if annotations := _string_map(fields, 12):
        meta["annotations"] = annotations
    if finalizers := _strings(fields, 14):
        meta["finalizers"] = finalizers
    return meta


# Field tables (numbers from Kubernetes' generated.proto) for the kinds kubectl's typed
# commands create: `create namespace`, `create deployment`, `create service`, `create
# secret`, `create configmap`.
# Kinds: str, int (dropped when 0: a plain Go int), intp (kept: a Go pointer), bool,
# boolp, map, bmap (name -> bytes, base64 in JSON), qmap (name -> Quantity), ios
# (IntOrString), strs (repeated string),
# "meta", a message name, or "[Name]" for a repeated message.
_SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "Namespace": {1: ("metadata", "meta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "strs")},
    "Deployment": {1: ("metadata", "meta"), 2: ("spec", "DeploymentSpec")},
    "DeploymentSpec": {
        1: ("replicas", "intp"),
        2: ("selector", "LabelSelector"),
        3: ("template", "PodTemplateSpec"),
        4: ("strategy", "DeploymentStrategy"),
        5: ("minReadySeconds", "int"),
        6: ("revisionHistoryLimit", "intp"),
        7: ("paused", "bool"),
        9: ("progressDeadlineSeconds", "intp"),
    },
    "DeploymentStrategy": {1: ("type", "str"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")},
    "LabelSelector": {
        1: ("matchLabels", "map"),
        2: ("matchExpressions", "[LabelSelectorRequirement]"),
    },
    "LabelSelectorRequirement": {1: ("key", "str"), 2: ("operator", "str"), 3: ("values", "strs")},
    "PodTemplateSpec": {1: ("metadata", "meta"), 2: ("spec", "PodSpec")},
    "PodSpec": {
        2: ("containers", "[Container]"),
        3: ("restartPolicy", "str"),
        4: ("terminationGracePeriodSeconds", "intp"),
        6: ("dnsPolicy", "str"),
        7: ("nodeSelector", "map"),
        8: ("serviceAccountName", "str"),
        10: ("nodeName", "str"),
        15: ("imagePullSecrets", "[LocalObjectReference]"),
        19: ("schedulerName", "str"),
        20: ("initContainers", "[Container]"),
        30: ("enableServiceLinks", "boolp"),
    },
    "LocalObjectReference": {1: ("name", "str")},
    "Container": {
        1: ("name", "str"),
        2: ("image", "str"),
        3: ("command", "strs"),
        4: ("args", "strs"),
        5: ("workingDir", "str"),
        6: ("ports", "[ContainerPort]"),
        7: ("env", "[EnvVar]"),
        8: ("resources", "ResourceRequirements"),
        13: ("terminationMessagePath", "str"),
        14: ("imagePullPolicy", "str"),
        16: ("stdin", "bool"),
        18: ("tty", "bool"),
        20: ("terminationMessagePolicy", "str"),
    },
    "ContainerPort": {
        1: ("name", "str"),
        2: ("hostPort", "int"),
        3: ("containerPort", "int"),
        4: ("protocol", "str"),
        5: ("hostIP", "str"),
    },
    "EnvVar": {1: ("name", "str"), 2: ("value", "str")},
    "ResourceRequirements": {1: ("limits", "qmap"), 2: ("requests", "qmap")},
    "Service": {1: ("metadata", "meta"), 2: ("spec", "ServiceSpec")},
    "Secret": {
        1: ("metadata", "meta"),
        2: ("data", "bmap"),
        3: ("type", "str"),
        4: ("stringData", "map"),
        5: ("immutable", "boolp"),
    },
    "ConfigMap": {
        1: ("metadata", "meta"),
        2: ("data", "map"),
        3: ("binaryData", "bmap"),
        4: ("immutable", "boolp"),
    },
    "ServiceSpec": {
        1: ("ports", "[ServicePort]"),
        2: ("selector", "map"),
        3: ("clusterIP", "str"),
        4: ("type", "str"),
        7: ("sessionAffinity", "str"),
        10: ("externalName", "str"),
    },
    "ServicePort": {
        1: ("name", "str"),
        2: ("protocol", "str"),
        3: ("port", "int"),
        4: ("targetPort", "ios"),
        5: ("nodePort", "int"),
    },
}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _int_or_string(data: bytes) -> int | str | None:
    fields = parse(data)
    kind = _signed(fields.get(1, [0])[-1])
    if kind == 1:
        return _str(fields, 3) or None
    value = _signed(fields.get(2, [0])[-1])
    return value or None


def _field(kind: str, values: list[Any]) -> Any:
    """The JSON value of one field, or None when Go would omit it."""
    last = values[-1]
    if kind == "str":
        return last.decode() or None
    if kind in ("int", "intp"):
        number = _signed(last)
        return number if number or kind == "intp" else None
    if kind in ("bool", "boolp"):
        return bool(last) if last or kind == "boolp" else None
    if kind == "strs":
        return [v.decode() for v in values] or None
    if kind in ("map", "qmap", "bmap"):
        out = {}
        for entry in values:
            kv = parse(entry)
            value = kv.get(2, [b""])[-1]
            if kind == "qmap":
                out[_str(kv, 1) or ""] = _str(parse(value), 1)
            elif kind == "bmap":
                out[_str(kv, 1) or ""] = base64.b64encode(value).decode()
            else:
                out[_str(kv, 1) or ""] = value.decode()
        return out or None
    if kind == "ios":
        return _int_or_string(last)
    if kind == "meta":
        return _object_meta(last) or None
    if kind.startswith("["):
        items = [_message(kind[1:-1], v) for v in values]
        return [i for i in items if i is not None] or None
    return _message(kind, last)


def _message(name: str, data: bytes) -> dict[str, Any] | None:
    fields = parse(data)
    out: dict[str, Any] = {}
    for number, (key, kind) in _SCHEMAS[name].items():
        if number in fields:
            value = _field(kind, fields[number])
            if value is not None:
                out[key] = value
    return out or None


_KINDS = {
    ("v1", "Namespace"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON-equivalent object of a protobuf request body (415 for unknown kinds)."""
    try:
        if not body.startswith(MAGIC):
            raise ValueError("missing magic prefix")
        envelope = parse(body[len(MAGIC) :])
        type_meta = parse(envelope.get(1, [b""])[-1])
        api_version, kind = _str(type_meta, 1) or "", _str(type_meta, 2) or ""
        raw = envelope.get(2, [b""])[-1]
    except ValueError as exc:
        raise ApiError(400, f"unable to decode protobuf body: {exc}", "BadRequest") from exc
    if (api_version, kind) not in _KINDS:
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml",
            "UnsupportedMediaType",
        )
    try:
        body = _message(kind, raw) or {}
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"unable to decode protobuf body: {exc}", "BadRequest") from exc
    return {"apiVersion": api_version, "kind": kind, **body}
