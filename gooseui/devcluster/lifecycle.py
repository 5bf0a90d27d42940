"""Garbage collection, namespace deletion and ResourceQuota usage.

Deleting a Deployment takes its ReplicaSets and pods with it (ownerReferences, with
Background, Foreground and Orphan propagation); deleting a namespace keeps it
`Terminating` until everything in it is gone; a ResourceQuota's `status.used.pods`
follows the pods in its namespace.
"""

from __future__ import annotations

import asyncio
import contextlib

from .errors import ApiError
from .events import EventRecorder
from .registry import DeleteOptions, Registry
from .resources import NAMESPACES, PODS, QUOTAS, RESOURCES, by_key
from .settings import Delays
from .store import Change, Key, Obj
from .workqueue import WorkQueue

MANAGER = "kube-controller-manager"


def _owners(obj: Obj) -> list[str]:
    return [ref.get("uid", "") for ref in obj.get("metadata", {}).get("ownerReferences") or []]


class GarbageCollector:
    """Deletes dependents of deleted owners and completes foreground/orphan deletions."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.queue: WorkQueue[tuple[Key, str, str]] = WorkQueue(
            "garbage-collector", self._finish_owner
        )

    def _dependents(self, namespace: str, uid: str) -> list[tuple[Key, Obj]]:
        return self.registry.store.dependents_with_keys(namespace, uid)

    def on_change(self, change: Change) -> None:
        meta = change.obj.get("metadata", {})
        ns = meta.get("namespace", "")
        if change.type == "DELETED":
            uid = meta.get("uid", "")
            for key, obj in self._dependents(ns, uid):
                others = [u for u in _owners(obj) if u != uid]
                if others:
                    continue
                with contextlib.suppress(ApiError):
                    self.registry.delete(
                        by_key(*key),
                        ns,
                        obj["metadata"]["name"],
                        DeleteOptions(propagation="Background"),
                    )
            # an owner waiting in foreground deletion may now be free to go
            for owner in meta.get("ownerReferences") or []:
                self._recheck_owner(ns, owner)
        elif meta.get("deletionTimestamp") and {"foregroundDeletion", "orphan"} & set(
            meta.get("finalizers") or []
        ):
            self.queue.add((change.key, ns, meta["name"]))

    def _recheck_owner(self, ns: str, ref: Obj) -> None:
        kind, api_version = ref.get("kind"), ref.get("apiVersion", "")
        group = api_version.split("/")[0] if "/" in api_version else ""
        for res in RESOURCES:
            if res.kind == kind and res.group == group:
                owner = self.registry.find(res, ns, ref.get("name", ""))
                if owner is not None and owner["metadata"].get("deletionTimestamp"):
                    self.queue.add((res.key, ns, ref.get("name", "")))

    def _finish_owner(self, item: tuple[Key, str, str]) -> None:
        key, ns, name = item
        res = by_key(*key)
        obj = self.registry.find(res, ns, name)
        if obj is None or not obj["metadata"].get("deletionTimestamp"):
            return
        uid = obj["metadata"]["uid"]
        finalizers = list(obj["metadata"].get("finalizers") or [])
        dependents = self._dependents(ns, uid)
        if "orphan" in finalizers:
            for dkey, dep in dependents:
                self.registry.mutate(
                    by_key(*dkey),
                    ns,
                    dep["metadata"]["name"],
                    lambda o: o["metadata"].__setitem__(
                        "ownerReferences",
                        [
                            r
                            for r in o["metadata"].get("ownerReferences") or []
                            if r.get("uid") != uid
                        ],
                    ),
                    MANAGER,
                )
            finalizers.remove("orphan")
        elif "foregroundDeletion" in finalizers:
            if dependents:
                for dkey, dep in dependents:
                    if not dep["metadata"].get("deletionTimestamp"):
                        with contextlib.suppress(ApiError):
                            self.registry.delete(
                                by_key(*dkey),
                                ns,
                                dep["metadata"]["name"],
                                DeleteOptions(propagation="Foreground"),
                            )
                return
            finalizers.remove("foregroundDeletion")
        else:
            return
        self.registry.mutate(
            res, ns, name, lambda o: o["metadata"].__setitem__("finalizers", finalizers), MANAGER
        )


class NamespaceController:
    """Empties a Terminating namespace, then removes it."""

    def __init__(self, registry: Registry, recorder: EventRecorder, delays: Delays) -> None:
        self.registry = registry
        self.recorder = recorder
        self.delays = delays
        self.queue: WorkQueue[str] = WorkQueue("namespaces", self.reconcile)
        self._started: dict[str, float] = {}  # loop time a namespace was first seen Terminating

    def on_change(self, change: Change) -> None:
        meta = change.obj.get("metadata", {})
        if change.key == NAMESPACES.key:
            if meta.get("deletionTimestamp") and change.type != "DELETED":
                self.queue.add(meta["name"])
        elif change.type == "DELETED" and meta.get("namespace"):
            ns = self.registry.find(NAMESPACES, "", meta["namespace"])
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                self.queue.add(meta["namespace"])

    def reconcile(self, name: str) -> None:
        ns = self.registry.find(NAMESPACES, "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = list(self.registry.store.namespaces_in_use(name))
        for key, obj in remaining:
            if obj["metadata"].get("deletionTimestamp"):
                continue
            with contextlib.suppress(ApiError):
                self.registry.delete(
                    by_key(*key),
                    name,
                    obj["metadata"]["name"],
                    DeleteOptions(propagation="Background"),
                )
        if list(self.registry.store.namespaces_in_use(name)):
            return
        now = asyncio.get_running_loop().time()
        waited = now - self._started.setdefault(name, now)
        if waited < self.delays.namespace_finalize:
            self.queue.add_after(name, self.delays.namespace_finalize - waited)
            return
        self._started.pop(name, None)
        self.recorder.forget_namespace(name)
        self.registry.remove_now(NAMESPACES, "", name)


class QuotaController:
    """Keeps `status.used.pods` of each ResourceQuota current."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.queue: WorkQueue[str] = WorkQueue("resourcequotas", self.reconcile)

    def on_change(self, change: Change) -> None:
        ns = change.obj.get("metadata", {}).get("namespace")
        if ns and change.key in (PODS.key, QUOTAS.key) and self.registry.store.list(QUOTAS.key, ns):
            self.queue.add(ns)

    def reconcile(self, ns: str) -> None:
        used = str(self.registry.count_pods(ns))
        for quota in self.registry.store.list(QUOTAS.key, ns):
            hard = (quota.get("spec") or {}).get("hard") or {}
            if "pods" not in hard:
                continue

            def change(q: Obj) -> None:
                q.setdefault("status", {}).setdefault("used", {})["pods"] = used

            self.registry.mutate(
                QUOTAS, ns, quota["metadata"]["name"], change, MANAGER, track=False
            )
