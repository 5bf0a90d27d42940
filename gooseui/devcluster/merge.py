"""Patch algorithms: JSON merge patch, strategic merge patch, JSON patch, apply merge.

kubectl's client-side apply sends strategic merge patches with directives
(`$patch`, `$retainKeys`, `$setElementOrder/...`, `$deleteFromPrimitiveList/...`);
`kubectl scale` sends a merge patch; server-side apply needs a merge that keeps
fields other managers set. All share the list semantics of `fieldpath.list_type`.
"""

from __future__ import annotations

import json
from typing import Any

from . import fieldpath
from .errors import ApiError, bad_request
from .util import clone


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, `null` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    out = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge(target: Any, patch: Any, names: tuple[str, ...] = ()) -> Any:
    """Kubernetes strategic merge patch for the simulator's kinds.

    Returns None when the patch deletes the map (`$patch: delete`).
    """
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives(patch)
    if directive == "delete":
        return None
    out = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [v for v in out[field] if v not in (value or [])]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
            continue
        child = (*names, key)
        if isinstance(value, dict) and not fieldpath.is_atomic_map(child):
            merged = strategic_merge(out.get(key), value, child)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _merge_list(out.get(key), value, child)
        else:
            out[key] = clone(value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(target: Any, patch: list[Any], names: tuple[str, ...]) -> list[Any]:
    kind, keys = fieldpath.list_type(names)
    if kind == "set":
        result = list(target) if isinstance(target, list) else []
        for member in patch:
            if member not in result:
                result.append(member)
        return result
    if kind != "keyed":
        return _strip_directives(patch)
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    key = keys[0]
    result = clone(target) if isinstance(target, list) else []
    for item in patch:
        if not isinstance(item, dict):
            continue
        index = next(
            (
                n
                for n, cur in enumerate(result)
                if isinstance(cur, dict) and cur.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge(result[index], item, names)
    return result


def apply_merge(live: Any, applied: Any, names: tuple[str, ...] = ()) -> Any:
    """Merge an applied configuration into the live object (server-side apply).

    Maps merge key by key, keyed lists merge item by item (live order kept, new items
    appended), sets take the union, atomic lists and scalars are replaced.
    """
    if isinstance(applied, dict) and isinstance(live, dict) and not fieldpath.is_atomic_map(names):
        out = clone(live)
        for key, value in applied.items():
            if value is None:
                out.pop(key, None)
            elif key in live:
                out[key] = apply_merge(live[key], value, (*names, key))
            else:
                out[key] = clone(value)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        kind, keys = fieldpath.list_type(names)
        if kind == "keyed" and _keyed(applied, keys) and _keyed(live, keys):
            by_key = {fieldpath.item_key(i, keys): i for i in applied}
            seen: set[str] = set()
            result = []
            for item in live:
                k = fieldpath.item_key(item, keys)
                seen.add(k)
                result.append(apply_merge(item, by_key[k], names) if k in by_key else clone(item))
            result += [clone(i) for i in applied if fieldpath.item_key(i, keys) not in seen]
            return result
        if kind == "set":
            return list(live) + [m for m in applied if m not in live]
    return clone(applied)


def _keyed(items: list[Any], keys: tuple[str, ...]) -> bool:
    return all(isinstance(i, dict) and all(k in i for k in keys) for i in items)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _invalid_patch(message: str) -> ApiError:
    return ApiError(
        422, f"the server rejected our request due to an error in our request: {message}", "Invalid"
    )


def _parent(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise _invalid_patch(f"path /{'/'.join(parts)} does not exist")
    return cur


def _read(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _invalid_patch(f"path /{'/'.join(parts)} does not exist")


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _invalid_patch(f"path /{'/'.join(parts)} does not exist")


def _add(doc: Any, parts: list[str], value: Any, replace: bool) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise _invalid_patch(f"path /{'/'.join(parts)} does not exist")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise _invalid_patch(f"index {last} out of range")
    else:
        raise _invalid_patch(f"path /{'/'.join(parts)} does not exist")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    out = clone(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {json.dumps(op)}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            out = _add(out, parts, clone(op.get("value")), replace=False)
        elif kind == "remove":
            _remove(out, parts)
        elif kind == "replace":
            out = _add(out, parts, clone(op.get("value")), replace=True)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _remove(out, source) if kind == "move" else clone(_read(out, source))
            out = _add(out, parts, value, replace=False)
        elif kind == "test":
            if _read(out, parts) != op.get("value"):
                raise _invalid_patch(f"testing value {op['path']} failed")
        else:
            raise bad_request(f"unexpected json patch operation {kind!r}")
    return out
