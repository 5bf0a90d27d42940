"""Field paths, field sets and the list semantics server-side apply needs.

Server-side apply tracks which manager owns which field. A field is a path of
`FieldsV1` elements (`f:spec`, `k:{"name":"goose-api"}` for an item of a keyed list,
`v:"x"` for a set member), so ownership renders directly as `managedFields`.
The list semantics (keyed, set, atomic) follow the Kubernetes schemas for the
fields the simulator's kinds use; every other list is atomic, as in the real API.
"""

from __future__ import annotations

import json
from typing import Any

Path = tuple[str, ...]

# Field-name paths (list items skipped) of keyed lists -> merge keys, decided by the
# last name and, where the name is ambiguous, its parent.
_KEYED_BY_NAME: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "volumes": ("name",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "resourceClaims": ("name",),
    "listeners": ("name",),  # Gateway spec.listeners (x-kubernetes-list-map-keys: name)
}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}
_SETS = {"finalizers"}
# Maps that the real schemas mark `x-kubernetes-map-type: atomic`.
_ATOMIC_MAPS = {"selector", "nodeSelector", "matchLabels"}
# Fields never tracked by field managers.
_UNTRACKED_TOP = {"apiVersion", "kind", "status"}
_UNTRACKED_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
}


def list_type(names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """("keyed", keys) | ("set", ()) | ("atomic", ()) for the list at `names`."""
    if not names:
        return ("atomic", ())
    last = names[-1]
    parent = names[-2] if len(names) > 1 else ""
    if last == "ports":
        if parent in _CONTAINER_LISTS:
            return ("keyed", ("containerPort",))
        if parent == "spec" and len(names) == 2:
            return ("keyed", ("port",))
        return ("atomic", ())
    if last in _KEYED_BY_NAME:
        if last == "conditions" and parent != "status":
            return ("atomic", ())
        return ("keyed", _KEYED_BY_NAME[last])
    if last in _SETS:
        return ("set", ())
    return ("atomic", ())


def is_atomic_map(names: tuple[str, ...]) -> bool:
    return bool(names) and names[-1] in _ATOMIC_MAPS and len(names) > 1


def item_key(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    """The `k:{...}` element naming a keyed-list item."""
    return "k:" + json.dumps({k: item.get(k) for k in sorted(keys)}, separators=(",", ":"))


def _has_keys(items: list[Any], keys: tuple[str, ...]) -> bool:
    return all(isinstance(i, dict) and all(k in i for k in keys) for i in items)


def fieldset(obj: dict[str, Any], tracked_only: bool = True) -> set[Path]:
    """All leaf paths (and keyed-item markers) set in `obj`."""
    out: set[Path] = set()
    for key, value in obj.items():
        if tracked_only and key in _UNTRACKED_TOP:
            continue
        if tracked_only and key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _UNTRACKED_META}
            _walk(meta, ("metadata",), ("f:metadata",), out)
            continue
        _walk_value(value, (key,), ("f:" + key,), out)
    return out


def _walk(obj: dict[str, Any], names: tuple[str, ...], prefix: Path, out: set[Path]) -> None:
    for key, value in obj.items():
        _walk_value(value, (*names, key), (*prefix, "f:" + key), out)


def _walk_value(value: Any, names: tuple[str, ...], path: Path, out: set[Path]) -> None:
    if isinstance(value, dict):
        if value and not is_atomic_map(names):
            _walk(value, names, path, out)
        else:
            out.add(path)
    elif isinstance(value, list):
        kind, keys = list_type(names)
        if kind == "keyed" and value and _has_keys(value, keys):
            for item in value:
                item_path = (*path, item_key(item, keys))
                out.add(item_path)
                _walk(item, names, item_path, out)
        elif kind == "set" and value and all(not isinstance(v, dict | list) for v in value):
            for member in value:
                out.add((*path, "v:" + json.dumps(member, separators=(",", ":"))))
        else:
            out.add(path)
    else:
        out.add(path)


def names_of(path: Path) -> tuple[str, ...]:
    """Field names along a path, list elements dropped."""
    return tuple(p[2:] for p in path if p.startswith("f:"))


def get(obj: Any, path: Path) -> tuple[bool, Any]:
    """(found, value) at `path` in `obj`."""
    cur = obj
    for element in path:
        if element.startswith("f:"):
            if not isinstance(cur, dict) or element[2:] not in cur:
                return (False, None)
            cur = cur[element[2:]]
        elif element.startswith("k:"):
            if not isinstance(cur, list):
                return (False, None)
            want = json.loads(element[2:])
            found = [
                i
                for i in cur
                if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())
            ]
            if not found:
                return (False, None)
            cur = found[0]
        elif element.startswith("v:"):
            member = json.loads(element[2:])
            if not isinstance(cur, list) or member not in cur:
                return (False, None)
            cur = member
        else:
            return (False, None)
    return (True, cur)


def delete(obj: Any, path: Path) -> bool:
    """Remove the field, item or set member at `path`; True when something was removed."""
    if not path:
        return False
    found, parent = get(obj, path[:-1])
    if not found:
        return False
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        return parent.pop(last[2:], _MISSING) is not _MISSING
    if last.startswith("k:") and isinstance(parent, list):
        want = json.loads(last[2:])
        before = len(parent)
        parent[:] = [
            i
            for i in parent
            if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))
        ]
        return len(parent) != before
    if last.startswith("v:") and isinstance(parent, list):
        member = json.loads(last[2:])
        if member in parent:
            parent.remove(member)
            return True
    return False


_MISSING = object()


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    """Render a field set in the `FieldsV1` JSON form of `managedFields`."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
        if path and path[-1].startswith("k:"):
            node["."] = {}
    return root


def from_fields_v1(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    """Parse a `FieldsV1` document back into a field set."""
    out: set[Path] = set()
    for element, child in fields.items():
        if element == ".":
            out.add(prefix)
            continue
        path = (*prefix, element)
        if not child:
            out.add(path)
        else:
            out |= from_fields_v1(child, path)
    return out


def dotted(path: Path) -> str:
    """`.spec.template.spec.containers[name="x"].image` as conflict messages show it."""
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += "." + element[2:]
        elif element.startswith("k:"):
            want = json.loads(element[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in want.items()) + "]"
        elif element.startswith("v:"):
            text += "[=" + element[2:] + "]"
    return text
