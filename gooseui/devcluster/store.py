"""The object store: objects by resource, one global resourceVersion, watch history.

Like etcd behind the watch cache: every write gets the next resourceVersion and is
appended to a bounded history, so a watch can resume from any resourceVersion still
in the history and gets 410 (Expired) for an older one. Stored objects are never
mutated after they are stored; readers may share them, writers store a new dict.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import expired

Key = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One committed write as watchers and controllers see it."""

    type: str  # "ADDED" | "MODIFIED" | "DELETED"
    key: Key
    obj: Obj
    old: Obj | None
    rv: int


@dataclass(eq=False)
class Watcher:
    """A subscription to one resource; events arrive on `queue` (None = closed)."""

    key: Key
    namespace: str | None
    predicate: Callable[[Obj], bool]
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if (
            self.namespace is not None
            and obj.get("metadata", {}).get("namespace") != self.namespace
        ):
            return False
        return self.predicate(obj)

    def translate(self, change: Change) -> tuple[str, Obj] | None:
        """The event this watcher must see for `change` (label changes become ADDED/DELETED)."""
        now = self.matches(change.obj)
        if change.type == "ADDED":
            return ("ADDED", change.obj) if now else None
        if change.type == "DELETED":
            return ("DELETED", change.obj) if now else None
        before = self.matches(change.old)
        if before and now:
            return ("MODIFIED", change.obj)
        if before:
            return ("DELETED", change.obj)
        if now:
            return ("ADDED", change.obj)
        return None


def _ident(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (meta.get("namespace", ""), meta.get("name", ""))


class Store:
    """In-memory objects with resourceVersions, history and subscribers."""

    def __init__(self, history_limit: int = 20000) -> None:
        self._rv = 0
        self._objects: dict[Key, dict[tuple[str, str], Obj]] = {}
        # key -> namespace -> name -> object: a namespaced list (the proxy, the kubelet, the
        # NetworkPolicy check on every proxied request) costs what is in that namespace only
        self._by_namespace: dict[Key, dict[str, dict[str, Obj]]] = {}
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        self._compacted = 0  # events with rv <= this are gone from history
        self._watchers: dict[Key, set[Watcher]] = {}
        self._listeners: list[Callable[[Change], None]] = []
        # (namespace, owner uid) -> {(key, name): dependent}, so controllers and the
        # garbage collector find dependents without scanning the namespace
        self._by_owner: dict[tuple[str, str], dict[tuple[Key, str], Obj]] = {}

    @property
    def resource_version(self) -> int:
        return self._rv

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def get(self, key: Key, namespace: str, name: str) -> Obj | None:
        return self._objects.get(key, {}).get((namespace, name))

    def list(self, key: Key, namespace: str | None = None) -> list[Obj]:
        """Objects of one resource (of one namespace), ordered by namespace and name."""
        if namespace is None:
            objects = self._objects.get(key, {})
            return [objects[k] for k in sorted(objects)]
        names = self._by_namespace.get(key, {}).get(namespace, {})
        return [names[n] for n in sorted(names)]

    def count(self, key: Key, namespace: str) -> int:
        return len(self._by_namespace.get(key, {}).get(namespace, {}))

    def namespaces_in_use(self, namespace: str) -> Iterable[tuple[Key, Obj]]:
        """Every object in `namespace`, across resources."""
        for key, spaces in list(self._by_namespace.items()):
            for obj in list(spaces.get(namespace, {}).values()):
                yield key, obj

    def dependents(self, namespace: str, owner_uid: str, key: Key | None = None) -> list[Obj]:
        """Objects in `namespace` with an ownerReference to `owner_uid` (of one resource)."""
        found = self._by_owner.get((namespace, owner_uid), {})
        return [obj for (k, _name), obj in found.items() if key is None or k == key]

    def dependents_with_keys(self, namespace: str, owner_uid: str) -> list[tuple[Key, Obj]]:
        return [
            (k, obj) for (k, _name), obj in self._by_owner.get((namespace, owner_uid), {}).items()
        ]

    def _index(self, key: Key, obj: Obj | None, add: bool) -> None:
        if obj is None:
            return
        meta = obj.get("metadata", {})
        ns = meta.get("namespace", "")
        for ref in meta.get("ownerReferences") or []:
            slot = (ns, ref.get("uid", ""))
            if add:
                self._by_owner.setdefault(slot, {})[(key, meta.get("name", ""))] = obj
            else:
                entries = self._by_owner.get(slot)
                if entries is not None:
                    entries.pop((key, meta.get("name", "")), None)
                    if not entries:
                        del self._by_owner[slot]

    def put(self, key: Key, obj: Obj) -> Obj:
        """Store `obj` (ADDED or MODIFIED) under a new resourceVersion; returns it."""
        rv = self.next_rv()
        obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
        ident = _ident(obj)
        bucket = self._objects.setdefault(key, {})
        old = bucket.get(ident)
        bucket[ident] = obj
        self._by_namespace.setdefault(key, {}).setdefault(ident[0], {})[ident[1]] = obj
        self._index(key, old, add=False)
        self._index(key, obj, add=True)
        self._commit(Change("MODIFIED" if old is not None else "ADDED", key, obj, old, rv))
        return obj

    def remove(self, key: Key, namespace: str, name: str) -> Obj | None:
        """Delete an object; watchers get it with the deletion's resourceVersion."""
        bucket = self._objects.get(key, {})
        old = bucket.pop((namespace, name), None)
        if old is None:
            return None
        spaces = self._by_namespace.get(key, {})
        names = spaces.get(namespace)
        if names is not None:
            names.pop(name, None)
            if not names:
                del spaces[namespace]
        self._index(key, old, add=False)
        rv = self.next_rv()
        final = {**old, "metadata": {**old.get("metadata", {}), "resourceVersion": str(rv)}}
        self._commit(Change("DELETED", key, final, old, rv))
        return final

    def _commit(self, change: Change) -> None:
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._compacted = self._history.popleft().rv
        for watcher in self._watchers.get(change.key, ()):
            event = watcher.translate(change)
            if event is not None:
                watcher.queue.put_nowait(event)
        for listener in list(self._listeners):
            listener(change)

    def compact(self) -> int:
        """Forget all history (as etcd compaction does); returns the compacted revision."""
        self._history.clear()
        self._compacted = self._rv
        return self._compacted

    def subscribe(self, listener: Callable[[Change], None]) -> None:
        """Call `listener` synchronously after every commit (controllers enqueue work)."""
        self._listeners.append(listener)

    def watch(
        self,
        key: Key,
        namespace: str | None,
        predicate: Callable[[Obj], bool],
        since: int | None,
    ) -> Watcher:
        """Open a watch.

        `since=None` starts with synthetic ADDED events for the current objects; a number
        replays history after it; one older than the retained history raises 410.
        """
        if since is not None and since < self._compacted:
            raise expired(f"too old resource version: {since} ({self._compacted + 1})")
        watcher = Watcher(key, namespace, predicate)
        if since is None:
            for obj in self.list(key, namespace):
                if watcher.matches(obj):
                    watcher.queue.put_nowait(("ADDED", obj))
        else:
            for change in self._history:
                if change.rv > since and change.key == key:
                    event = watcher.translate(change)
                    if event is not None:
                        watcher.queue.put_nowait(event)
        self._watchers.setdefault(key, set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.get(watcher.key, set()).discard(watcher)

    def close_watchers(self) -> None:
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.queue.put_nowait(None)
        self._watchers.clear()
