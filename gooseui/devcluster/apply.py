"""Server-side apply and field ownership (`metadata.managedFields`).

The console applies its objects with field manager `gooseui` and `force`, kubectl
scales with its own manager through `/scale`; whether a later apply conflicts depends
on who owns `spec.replicas`. This module keeps that ownership per manager, detects
conflicts the way the API server reports them, and removes fields a manager stopped
applying when nobody else owns them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import fieldpath
from .errors import ApiError
from .fieldpath import Path
from .merge import apply_merge
from .util import clone


@dataclass
class ManagerEntry:
    """One `managedFields` entry: a manager identity and the fields it owns."""

    manager: str
    operation: str  # "Apply" | "Update"
    api_version: str
    time: str
    subresource: str = ""
    paths: set[Path] = field(default_factory=set)

    def same_identity(self, manager: str, operation: str, subresource: str) -> bool:
        return (self.manager, self.operation, self.subresource) == (manager, operation, subresource)

    def describe(self) -> str:
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        return f"{text} using {self.api_version}"

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fieldpath.to_fields_v1(self.paths),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def read_entries(obj: dict[str, Any] | None) -> list[ManagerEntry]:
    """The manager entries recorded on a stored object."""
    if not obj:
        return []
    entries = []
    for raw in obj.get("metadata", {}).get("managedFields") or []:
        entries.append(
            ManagerEntry(
                manager=raw.get("manager", ""),
                operation=raw.get("operation", "Update"),
                api_version=raw.get("apiVersion", ""),
                time=raw.get("time", ""),
                subresource=raw.get("subresource", ""),
                paths=fieldpath.from_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def write_entries(obj: dict[str, Any], entries: list[ManagerEntry]) -> None:
    kept = [e.render() for e in entries if e.paths]
    if kept:
        obj.setdefault("metadata", {})["managedFields"] = kept
    else:
        obj.get("metadata", {}).pop("managedFields", None)


def _value_differs(live: dict[str, Any], applied: dict[str, Any], path: Path) -> bool:
    if path[-1].startswith(("k:", "v:")):
        return False
    found_live, live_value = fieldpath.get(live, path)
    found_applied, applied_value = fieldpath.get(applied, path)
    return not found_live or not found_applied or live_value != applied_value


def conflict_error(
    kind: str, group: str, name: str, conflicts: list[tuple[ManagerEntry, Path]]
) -> ApiError:
    """409 with the API server's "Apply failed with N conflict(s)" message and causes."""
    count = len(conflicts)
    if count == 1:
        entry, path = conflicts[0]
        text = f"conflict with {entry.describe()}: {fieldpath.dotted(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(fieldpath.dotted(path))
        text = "conflicts with"
        if len(by_manager) == 1:
            manager, paths = next(iter(by_manager.items()))
            text += f" {manager}" + "".join(f"\n- {p}" for p in paths)
        else:
            for manager, paths in by_manager.items():
                text += f"\n{manager}:" + "".join(f"\n- {p}" for p in paths)
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {entry.describe()}",
            "field": fieldpath.dotted(path),
        }
        for entry, path in conflicts
    ]
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    plural = "" if count == 1 else "s"
    return ApiError(409, f"Apply failed with {count} conflict{plural}: {text}", "Conflict", details)


def _prune_removed(obj: dict[str, Any], removed: set[Path], still_owned: set[Path]) -> None:
    """Delete fields a manager gave up; keyed items only when nobody owns anything inside."""
    for path in sorted(removed, key=len, reverse=True):
        if path[-1].startswith("k:") and any(
            p[: len(path)] == path and p != path for p in still_owned
        ):
            continue
        if fieldpath.delete(obj, path):
            # Drop maps emptied by the removal, up to the first one someone still owns.
            parent = path[:-1]
            while parent and parent[-1].startswith("f:"):
                found, value = fieldpath.get(obj, parent)
                if not found or value != {} or parent in still_owned:
                    break
                fieldpath.delete(obj, parent)
                parent = parent[:-1]


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    api_version: str,
    now: str,
    kind: str,
    group: str,
    name: str,
) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `live` (None when creating).

    Raises a 409 conflict when another manager owns a field with a different value and
    `force` is false; with `force` the field changes owner.
    """
    applied = {k: v for k, v in applied.items() if k != "status"}
    applied_meta = dict(applied.get("metadata") or {})
    applied_meta.pop("managedFields", None)
    applied_meta.pop("resourceVersion", None)
    applied = {**applied, "metadata": applied_meta}
    base = clone(live) if live else {}
    entries = read_entries(base)
    applied_set = fieldpath.fieldset(applied)

    mine = next((e for e in entries if e.same_identity(manager, "Apply", "")), None)
    others = [e for e in entries if e is not mine]
    conflicts: list[tuple[ManagerEntry, Path]] = []
    for entry in others:
        for path in sorted(entry.paths & applied_set):
            if _value_differs(base, applied, path):
                conflicts.append((entry, path))
    if conflicts and not force:
        raise conflict_error(kind, group, name, conflicts)
    for entry, path in conflicts:
        entry.paths.discard(path)

    previous = mine.paths if mine else set()
    owned_by_others: set[Path] = set().union(*(e.paths for e in others)) if others else set()
    removed = previous - applied_set - owned_by_others
    _prune_removed(base, removed, owned_by_others | applied_set)

    merged = apply_merge(base, applied)
    if mine is None:
        mine = ManagerEntry(manager, "Apply", api_version, now)
        entries.append(mine)
    mine.paths = applied_set
    mine.time = now
    mine.api_version = api_version
    write_entries(merged, entries)
    return merged


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    api_version: str,
    now: str,
    subresource: str = "",
) -> None:
    """Record an Update-operation write (POST, PUT, merge/strategic/JSON patch, /scale).

    The writer takes the fields it changed from everybody else; fields that
    disappeared lose their owners.
    """
    entries = read_entries(old)
    old_set = fieldpath.fieldset(old) if old else set()
    new_set = fieldpath.fieldset(new)
    changed = {p for p in new_set if p not in old_set or _value_differs(old or {}, new, p)}
    gone = old_set - new_set
    for entry in entries:
        entry.paths -= changed
        entry.paths -= gone
        entry.paths = {p for p in entry.paths if not any(p[: len(g)] == g for g in gone)}
    if changed:
        mine = next((e for e in entries if e.same_identity(manager, "Update", subresource)), None)
        if mine is None:
            mine = ManagerEntry(manager, "Update", api_version, now, subresource)
            entries.append(mine)
        mine.paths |= changed
        mine.time = now
    write_entries(new, entries)
