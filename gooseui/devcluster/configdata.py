"""Secrets and ConfigMaps as the API server decodes, defaults and validates them.

The console copies the agent's environment into a Secret and its config.yaml into a
ConfigMap; on a real cluster a YAML number in a ConfigMap, a `data` value that is not
base64, a bad key or a 1 MiB overflow is refused, and `stringData` is folded into `data`
and never stored. The simulator refuses and folds the same way, so a console that works
here cannot depend on a leniency AKS does not have. The kubelet reads the decoded values
through `secret_value` / `configmap_value`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from .errors import ApiError

MAX_SIZE = 1024 * 1024  # corev1.MaxSecretSize, also the ConfigMap limit
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_B64 = re.compile(r"[A-Za-z0-9+/=]")
MSG_CONFIG_KEY = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
    "'[-._a-zA-Z0-9]+')"
)
Cause = tuple[str, str, str]


def _json_kind(value: Any) -> str:
    """The JSON type name Go's decoder reports for a value of the wrong type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def _undecodable(kind: str, why: str) -> ApiError:
    """400 as the API server answers a body its JSON decoder rejects."""
    return ApiError(
        400, f'{kind} in version "v1" cannot be handled as a {kind}: {why}', "BadRequest"
    )


def base64_error(text: str) -> int | None:
    """Offset Go's base64.StdEncoding reports for `text`, or None when it decodes.

    Go skips CR and LF, stops at the first character outside the alphabet, and reports an
    incomplete final quantum (missing padding) at the quantum's first byte.
    """
    quantum = 0
    quantum_start = 0
    padded = False
    for offset, ch in enumerate(text):
        if ch in "\r\n":
            continue
        if not _B64.match(ch) or (padded and ch != "="):
            return offset
        if ch == "=":
            if quantum < 2:
                return offset
            padded = True
        if quantum == 0:
            quantum_start = offset
        quantum = (quantum + 1) % 4
    if quantum:
        return quantum_start
    return None


def decode(text: str) -> bytes:
    """The bytes of a stored base64 value (already checked by `check_decodable`)."""
    try:
        return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return b""


def encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _check_bytes_map(kind: str, field: str, values: Any) -> None:
    if values is None:
        return
    if not isinstance(values, dict):
        raise _undecodable(
            kind,
            f"json: cannot unmarshal {_json_kind(values)} into Go struct field "
            f"{kind}.{field} of type map[string][]uint8",
        )
    for value in values.values():
        if value is None:
            continue
        if not isinstance(value, str):
            raise _undecodable(
                kind,
                f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                f"{kind}.{field} of type []uint8",
            )
        offset = base64_error(value)
        if offset is not None:
            raise _undecodable(kind, f"illegal base64 data at input byte {offset}")


def _check_string_map(kind: str, field: str, values: Any) -> None:
    if values is None:
        return
    if not isinstance(values, dict):
        raise _undecodable(
            kind,
            f"json: cannot unmarshal {_json_kind(values)} into Go struct field "
            f"{kind}.{field} of type map[string]string",
        )
    for value in values.values():
        if value is not None and not isinstance(value, str):
            raise _undecodable(
                kind,
                f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                f"{kind}.{field} of type string",
            )


def prepare_secret(obj: dict[str, Any]) -> None:
    """Decode-time checks, then fold `stringData` into `data` and default `type` (in place).

    The real API server converts `stringData` into `data` (stringData wins on a shared
    key) when it decodes the object, so it is never stored or returned.
    """
    _check_bytes_map("Secret", "data", obj.get("data"))
    _check_string_map("Secret", "stringData", obj.get("stringData"))
    data = {k: v for k, v in (obj.get("data") or {}).items() if v is not None}
    for key, value in (obj.pop("stringData", None) or {}).items():
        if value is not None:
            data[key] = encode(value.encode())
    if data:
        obj["data"] = data
    else:
        obj.pop("data", None)
    if not obj.get("type"):
        obj["type"] = "Opaque"


def prepare_configmap(obj: dict[str, Any]) -> None:
    """Decode-time checks of a ConfigMap (string `data`, base64 `binaryData`)."""
    _check_string_map("ConfigMap", "data", obj.get("data"))
    _check_bytes_map("ConfigMap", "binaryData", obj.get("binaryData"))
    for field in ("data", "binaryData"):
        values = obj.get(field)
        if isinstance(values, dict):
            kept = {k: v for k, v in values.items() if v is not None}
            if kept:
                obj[field] = kept
            else:
                obj.pop(field, None)


def _key_causes(field: str, keys: Any) -> list[Cause]:
    causes: list[Cause] = []
    for key in keys:
        where = f"{field}[{key}]"
        quoted = json.dumps(key)
        problems = []
        if len(key) > 253:
            problems.append("must be no more than 253 characters")
        if not _CONFIG_KEY.match(key):
            problems.append(MSG_CONFIG_KEY)
        if key == ".":
            problems.append("must not be '.'")
        elif key == "..":
            problems.append("must not be '..'")
        elif key.startswith(".."):
            problems.append("must not start with '..'")
        for problem in problems:
            causes.append(("FieldValueInvalid", where, f"Invalid value: {quoted}: {problem}"))
    return causes


def _too_long(field: str) -> Cause:
    return ("FieldValueTooLong", field, f"Too long: may not be more than {MAX_SIZE} bytes")


_REQUIRED_KEYS = {
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def validate_secret(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """Keys, size, the per-type required keys, immutability (ValidateSecret)."""
    data: dict[str, str] = obj.get("data") or {}
    causes = _key_causes("data", data)
    if sum(len(decode(v)) for v in data.values()) > MAX_SIZE:
        causes.append(_too_long("data"))
    kind = obj.get("type") or "Opaque"
    for key in _REQUIRED_KEYS.get(kind, ()):
        if key not in data:
            causes.append(("FieldValueRequired", f"data[{key}]", "Required value"))
    if kind in ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"):
        key = ".dockerconfigjson" if kind.endswith("json") else ".dockercfg"
        if key in data:
            try:
                json.loads(decode(data[key]) or b"")
            except ValueError as exc:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"data[{key}]",
                        f'Invalid value: "<secret contents redacted>": {exc}',
                    )
                )
    if kind == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(
                (
                    "FieldValueRequired",
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "Required value",
                )
            )
    if old is not None:
        before = old.get("type") or "Opaque"
        if kind != before:
            causes.append(
                (
                    "FieldValueInvalid",
                    "type",
                    f"Invalid value: {json.dumps(kind)}: field is immutable",
                )
            )
        causes += _immutable_causes(obj, old, ("data",))
    return causes


def validate_configmap(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """Keys (no key in both maps), total size, immutability (ValidateConfigMap)."""
    data: dict[str, str] = obj.get("data") or {}
    binary: dict[str, str] = obj.get("binaryData") or {}
    causes = _key_causes("data", data) + _key_causes("binaryData", binary)
    for key in data:
        if key in binary:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"data[{key}]",
                    f"Invalid value: {json.dumps(key)}: duplicate of key present in binaryData",
                )
            )
    size = sum(len(v.encode()) for v in data.values()) + sum(
        len(decode(v)) for v in binary.values()
    )
    if size > MAX_SIZE:
        causes.append(_too_long("data"))
    if old is not None:
        causes += _immutable_causes(obj, old, ("data", "binaryData"))
    return causes


def _immutable_causes(
    obj: dict[str, Any], old: dict[str, Any], fields: tuple[str, ...]
) -> list[Cause]:
    if not old.get("immutable"):
        return []
    message = "Forbidden: field is immutable when `immutable` is set"
    causes: list[Cause] = []
    if not obj.get("immutable"):
        causes.append(("FieldValueForbidden", "immutable", message))
    for field in fields:
        if (obj.get(field) or {}) != (old.get(field) or {}):
            causes.append(("FieldValueForbidden", field, message))
    return causes


def secret_value(secret: dict[str, Any], key: str) -> str | None:
    """The decoded value of one Secret key as a process sees it (None when absent)."""
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return None
    return decode(raw).decode("utf-8", "replace")


def secret_items(secret: dict[str, Any]) -> dict[str, str]:
    return {k: decode(v).decode("utf-8", "replace") for k, v in (secret.get("data") or {}).items()}


def configmap_files(cm: dict[str, Any]) -> dict[str, str]:
    """A ConfigMap volume's files: `data` and `binaryData` keys."""
    files = dict(cm.get("data") or {})
    for key, value in (cm.get("binaryData") or {}).items():
        files[key] = decode(value).decode("utf-8", "replace")
    return files
