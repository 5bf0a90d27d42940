"""Deployment and ReplicaSet controllers, following kube-controller-manager's logic.

A Deployment owns one ReplicaSet per pod-template hash; the ReplicaSet owns the
pods. Status and conditions are computed the way the real controller computes them,
including its quirks that clients must cope with: a pure scale-up of an existing
ReplicaSet does not restart progress tracking (so `ProgressDeadlineExceeded` appears
only for a new rollout), quota rejections surface as `ReplicaFailure/FailedCreate`
copied from the ReplicaSet, and `Available` honours `maxUnavailable`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from .errors import ApiError
from .events import EventRecorder
from .registry import Registry
from .resources import DEPLOYMENTS, PODS, QUOTAS, REPLICASETS
from .store import Change, Obj
from .util import clone, now_iso, parse_iso, random_suffix, template_hash
from .workqueue import WorkQueue

MANAGER = "kube-controller-manager"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"

Key = tuple[str, str]


def owner_uid(obj: Obj, kind: str) -> str | None:
    """The uid of the controlling owner of kind `kind`, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return ref.get("uid")
    return None


def owner_name(obj: Obj, kind: str) -> str | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return ref.get("name")
    return None


def is_active_pod(pod: Obj) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get(
        "phase"
    ) not in (
        "Succeeded",
        "Failed",
    )


def pod_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _resolve(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value or "0")
    if text.endswith("%"):
        exact = int(text[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(text)


def max_unavailable(dep: Obj) -> int:
    spec = dep.get("spec") or {}
    strategy = spec.get("strategy") or {}
    replicas = int(spec.get("replicas", 1))
    if strategy.get("type") != "RollingUpdate" or replicas == 0:
        return 0
    rolling = strategy.get("rollingUpdate") or {}
    surge = _resolve(rolling.get("maxSurge", "25%"), replicas, True)
    unavailable = _resolve(rolling.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return min(unavailable, replicas)


def max_surge(dep: Obj) -> int:
    spec = dep.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0
    return _resolve(
        (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%"),
        int(spec.get("replicas", 1)),
        True,
    )


def get_condition(status: Obj, kind: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def set_condition(status: Obj, kind: str, value: str, reason: str, message: str, now: str) -> None:
    """SetDeploymentCondition: unchanged status+reason keeps the condition as it is."""
    current = get_condition(status, kind)
    if current and current.get("status") == value and current.get("reason") == reason:
        return
    transition = (
        current["lastTransitionTime"] if current and current.get("status") == value else now
    )
    condition = {
        "type": kind,
        "status": value,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != kind] + [
        condition
    ]


def remove_condition(status: Obj, kind: str) -> None:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)


def _omit_zero(status: Obj) -> Obj:
    """Drop zero counters (`omitempty` in the real JSON)."""
    return {
        k: v
        for k, v in status.items()
        if not (isinstance(v, int) and not isinstance(v, bool) and v == 0)
    }


class DeploymentController:
    """Turns Deployments into ReplicaSets and reports rollout status."""

    def __init__(self, registry: Registry, recorder: EventRecorder) -> None:
        self.registry = registry
        self.recorder = recorder
        self.queue: WorkQueue[Key] = WorkQueue("deployments", self.reconcile)

    def on_change(self, change: Change) -> None:
        meta = change.obj.get("metadata", {})
        ns = meta.get("namespace", "")
        if change.key == DEPLOYMENTS.key:
            self.queue.add((ns, meta["name"]))
        elif change.key == REPLICASETS.key:
            name = owner_name(change.obj, "Deployment")
            if name:
                self.queue.add((ns, name))
        elif change.key == PODS.key and change.type == "DELETED":
            rs_name = owner_name(change.obj, "ReplicaSet")
            rs = self.registry.find(REPLICASETS, ns, rs_name) if rs_name else None
            name = owner_name(rs, "Deployment") if rs else None
            if name:
                self.queue.add((ns, name))

    # ------------------------------------------------------------------ helpers

    def _replicasets(self, dep: Obj) -> list[Obj]:
        uid = dep["metadata"]["uid"]
        ns = dep["metadata"]["namespace"]
        owned = self.registry.store.dependents(ns, uid, REPLICASETS.key)
        return sorted(
            (rs for rs in owned if owner_uid(rs, "Deployment") == uid),
            key=lambda rs: rs["metadata"]["name"],
        )

    def _pods_of(self, ns: str, rs_uids: set[str]) -> list[Obj]:
        store = self.registry.store
        return [
            p
            for uid in sorted(rs_uids)
            for p in store.dependents(ns, uid, PODS.key)
            if owner_uid(p, "ReplicaSet") == uid
        ]

    def _create_rs(self, dep: Obj, pod_hash: str, replicas: int, revision: int) -> Obj:
        meta, spec = dep["metadata"], dep["spec"]
        template = clone(spec["template"])
        labels = {**(template.get("metadata", {}).get("labels") or {}), HASH_LABEL: pod_hash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = clone(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        desired = int(spec.get("replicas", 1))
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {
                    DESIRED: str(desired),
                    MAX_REPLICAS: str(desired + max_surge(dep)),
                    REVISION: str(revision),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds", 0)),
                "selector": selector,
                "template": template,
            },
        }
        created = self.registry.create(REPLICASETS, meta["namespace"], rs, MANAGER)
        if replicas > 0:
            self.recorder.record(
                dep,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}",
                "deployment-controller",
            )
        return created

    def _scale_rs(self, dep: Obj, rs: Obj, replicas: int) -> Obj:
        current = int(rs["spec"].get("replicas", 0))
        desired = str(dep["spec"].get("replicas", 1))
        annotations = rs["metadata"].get("annotations") or {}
        if current == replicas and annotations.get(DESIRED) == desired:
            return rs

        def change(obj: Obj) -> None:
            obj["spec"]["replicas"] = replicas
            obj["metadata"].setdefault("annotations", {})[DESIRED] = desired
            obj["metadata"]["annotations"][MAX_REPLICAS] = str(int(desired) + max_surge(dep))

        updated = self.registry.mutate(
            REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], change, MANAGER
        )
        if current != replicas:
            direction = "up" if replicas > current else "down"
            self.recorder.record(
                dep,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {rs['metadata']['name']} from {current} "
                f"to {replicas}",
                "deployment-controller",
            )
        return updated or rs

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, key: Key) -> None:
        ns, name = key
        dep = self.registry.find(DEPLOYMENTS, ns, name)
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            return
        spec = dep["spec"]
        desired = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec.get("template"))
        rss = self._replicasets(dep)
        new_rs = next(
            (rs for rs in rss if rs["metadata"].get("labels", {}).get(HASH_LABEL) == pod_hash), None
        )
        old_rss = [rs for rs in rss if rs is not new_rs]
        status = clone(dep.get("status") or {})
        now = now_iso()
        scaling_event = new_rs is not None and any(
            int(rs["spec"].get("replicas", 0)) > 0
            and (rs["metadata"].get("annotations") or {}).get(DESIRED) not in (None, str(desired))
            for rs in rss
        )
        revision = max(
            (int((rs["metadata"].get("annotations") or {}).get(REVISION, 0)) for rs in rss),
            default=0,
        )
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"

        if scaling_event and new_rs is not None:
            # The controller's `scale`: the one active ReplicaSet (or, with none active, the
            # newest) takes the new count, whichever template it has; a scale to 0 after a
            # template change therefore stops the old pods. Proportional scaling across
            # several active ReplicaSets is not modelled: the new one takes the count.
            active = [rs for rs in rss if int(rs["spec"].get("replicas", 0)) > 0]
            target = active[0] if len(active) == 1 else new_rs
            if target is new_rs:
                new_rs = self._scale_rs(dep, new_rs, desired)
            else:
                self._scale_rs(dep, target, desired)
        elif recreate:
            for rs in old_rss:
                if int(rs["spec"].get("replicas", 0)) > 0:
                    self._scale_rs(dep, rs, 0)
            old_uids = {rs["metadata"]["uid"] for rs in old_rss}
            old_running = [
                p
                for p in self._pods_of(ns, old_uids)
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ]
            if not old_running:
                if new_rs is None:
                    new_rs = self._create_rs(dep, pod_hash, desired, revision + 1)
                    set_condition(
                        status,
                        "Progressing",
                        "True",
                        "NewReplicaSetCreated",
                        f'Created new replica set "{new_rs["metadata"]["name"]}"',
                        now,
                    )
                else:
                    new_rs = self._scale_rs(dep, new_rs, desired)
        else:
            if new_rs is None:
                new_rs = self._create_rs(dep, pod_hash, desired, revision + 1)
                set_condition(
                    status,
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    f'Created new replica set "{new_rs["metadata"]["name"]}"',
                    now,
                )
            else:
                new_rs = self._scale_rs(dep, new_rs, desired)
            available_new = int((new_rs.get("status") or {}).get("availableReplicas", 0))
            for rs in old_rss:
                if int(rs["spec"].get("replicas", 0)) > 0 and available_new >= desired:
                    self._scale_rs(dep, rs, 0)
        if new_rs is not None and get_condition(status, "Progressing") is None:
            set_condition(
                status,
                "Progressing",
                "True",
                "FoundNewReplicaSet",
                f'Found new replica set "{new_rs["metadata"]["name"]}"',
                now,
            )

        if new_rs is not None:
            rev = (new_rs["metadata"].get("annotations") or {}).get(REVISION)
            if rev and (dep["metadata"].get("annotations") or {}).get(REVISION) != rev:
                dep = (
                    self.registry.mutate(
                        DEPLOYMENTS,
                        ns,
                        name,
                        lambda d: (
                            d["metadata"].setdefault("annotations", {}).__setitem__(REVISION, rev)
                        ),
                        MANAGER,
                    )
                    or dep
                )
        self._sync_status(dep, status, new_rs, not scaling_event)

    def _sync_status(self, dep: Obj, status: Obj, new_rs: Obj | None, rollout: bool) -> None:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        rss = self._replicasets(dep)
        desired = int(dep["spec"].get("replicas", 1))
        rs_status = [rs.get("status") or {} for rs in rss]
        available = sum(int(s.get("availableReplicas", 0)) for s in rs_status)
        total_spec = sum(int(rs["spec"].get("replicas", 0)) for rs in rss)
        fresh_new = next(
            (rs for rs in rss if new_rs and rs["metadata"]["uid"] == new_rs["metadata"]["uid"]),
            None,
        )
        counts = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": sum(int(s.get("replicas", 0)) for s in rs_status),
            "updatedReplicas": int((fresh_new or {}).get("status", {}).get("replicas", 0)),
            "readyReplicas": sum(int(s.get("readyReplicas", 0)) for s in rs_status),
            "availableReplicas": available,
            "unavailableReplicas": max(total_spec - available, 0),
        }
        old_status = dep.get("status") or {}
        new_status = {**{k: v for k, v in status.items() if k == "conditions"}, **counts}
        now = now_iso()
        if available >= desired - max_unavailable(dep):
            set_condition(
                new_status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
            )
        else:
            set_condition(
                new_status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
            )
        rs_label = (
            f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else f'Deployment "{name}"'
        )
        deadline = dep["spec"].get("progressDeadlineSeconds")
        current = get_condition(status, "Progressing")
        if rollout and deadline is not None:
            complete_rollout = (
                counts["replicas"] == counts["updatedReplicas"]
                and current is not None
                and current.get("reason") == "NewReplicaSetAvailable"
            )
            if not complete_rollout:
                if (
                    counts["updatedReplicas"] == desired
                    and counts["replicas"] == desired
                    and available == desired
                ):
                    set_condition(
                        new_status,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f"{rs_label} has successfully progressed.",
                        now,
                    )
                elif self._progressing(old_status, counts):
                    transition = (
                        current["lastTransitionTime"]
                        if current and current.get("status") == "True"
                        else now
                    )
                    remove_condition(new_status, "Progressing")
                    new_status.setdefault("conditions", []).append(
                        {
                            "type": "Progressing",
                            "status": "True",
                            "lastUpdateTime": now,
                            "lastTransitionTime": transition,
                            "reason": "ReplicaSetUpdated",
                            "message": f"{rs_label} is progressing.",
                        }
                    )
                elif self._timed_out(new_status, int(deadline)):
                    set_condition(
                        new_status,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f"{rs_label} has timed out progressing.",
                        now,
                    )
        failure = next(
            (
                get_condition(s, "ReplicaFailure")
                for s in rs_status
                if get_condition(s, "ReplicaFailure")
            ),
            None,
        )
        if failure:
            set_condition(
                new_status,
                "ReplicaFailure",
                failure["status"],
                failure["reason"],
                failure["message"],
                now,
            )
        else:
            remove_condition(new_status, "ReplicaFailure")
        new_status = _omit_zero(new_status)
        new_status["observedGeneration"] = counts["observedGeneration"]
        if new_status != old_status:
            self.registry.mutate(
                DEPLOYMENTS,
                ns,
                name,
                lambda d: d.__setitem__("status", new_status),
                MANAGER,
                track=False,
            )
        self._requeue_if_stuck(dep, new_status)

    @staticmethod
    def _progressing(old: Obj, new: Obj) -> bool:
        old_old = int(old.get("replicas", 0)) - int(old.get("updatedReplicas", 0))
        new_old = new["replicas"] - new["updatedReplicas"]
        return (
            new["updatedReplicas"] > int(old.get("updatedReplicas", 0))
            or new_old < old_old
            or new["readyReplicas"] > int(old.get("readyReplicas", 0))
            or new["availableReplicas"] > int(old.get("availableReplicas", 0))
        )

    @staticmethod
    def _timed_out(status: Obj, deadline: int) -> bool:
        cond = get_condition(status, "Progressing")
        if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
            return False
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return True
        return parse_iso(cond["lastUpdateTime"]) + deadline < time.time()

    def _requeue_if_stuck(self, dep: Obj, status: Obj) -> None:
        deadline = dep["spec"].get("progressDeadlineSeconds")
        cond = get_condition(status, "Progressing")
        if deadline is None or cond is None or cond.get("status") != "True":
            return
        if cond.get("reason") == "NewReplicaSetAvailable":
            return
        due = parse_iso(cond["lastUpdateTime"]) + int(deadline) - time.time()
        self.queue.add_after((dep["metadata"]["namespace"], dep["metadata"]["name"]), due + 1.05)


class ReplicaSetController:
    """Keeps the number of pods of each ReplicaSet at its spec and reports status."""

    def __init__(self, registry: Registry, recorder: EventRecorder) -> None:
        self.registry = registry
        self.recorder = recorder
        self.queue: WorkQueue[Key] = WorkQueue("replicasets", self.reconcile)
        self._failures: dict[Key, int] = {}

    def on_change(self, change: Change) -> None:
        meta = change.obj.get("metadata", {})
        ns = meta.get("namespace", "")
        if change.key == REPLICASETS.key:
            self.queue.add((ns, meta["name"]))
        elif change.key == PODS.key:
            name = owner_name(change.obj, "ReplicaSet")
            if name:
                self.queue.add((ns, name))
        elif change.key == QUOTAS.key:
            for rs in self.registry.store.list(REPLICASETS.key, ns):
                self.queue.add((ns, rs["metadata"]["name"]))

    def _new_pod(self, rs: Obj) -> Obj:
        template = clone(rs["spec"].get("template") or {})
        tmeta = template.get("metadata") or {}
        meta = rs["metadata"]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{random_suffix()}",
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "labels": tmeta.get("labels") or {},
                **({"annotations": tmeta["annotations"]} if tmeta.get("annotations") else {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }

    def reconcile(self, key: Key) -> None:
        ns, name = key
        rs = self.registry.find(REPLICASETS, ns, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            self._failures.pop(key, None)
            return
        uid = rs["metadata"]["uid"]
        pods = [
            p
            for p in self.registry.store.dependents(ns, uid, PODS.key)
            if owner_uid(p, "ReplicaSet") == uid
        ]
        active = [p for p in pods if is_active_pod(p)]
        desired = int(rs["spec"].get("replicas", 0))
        failure: ApiError | None = None
        if len(active) < desired:
            for _ in range(desired - len(active)):
                pod = self._new_pod(rs)
                try:
                    active.append(self.registry.create(PODS, ns, pod, MANAGER))
                except ApiError as err:
                    failure = err
                    break
                # the real controller's pod control records each pod it makes on the RS
                self.recorder.record(
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {pod['metadata']['name']}",
                    "replicaset-controller",
                )
        elif len(active) > desired:

            def rank(p: Obj) -> tuple[int, int, float]:
                # unscheduled, then not ready, then newest pods go first (as the real controller)
                scheduled = 1 if (p.get("spec") or {}).get("nodeName") else 0
                created = p["metadata"].get("creationTimestamp")
                return (
                    scheduled,
                    1 if pod_ready(p) else 0,
                    -parse_iso(created) if created else 0.0,
                )

            for pod in sorted(active, key=rank)[: len(active) - desired]:
                try:
                    self.registry.delete(PODS, ns, pod["metadata"]["name"])
                except ApiError:
                    pass
                else:
                    self.recorder.record(
                        rs,
                        "Normal",
                        "SuccessfulDelete",
                        f"Deleted pod: {pod['metadata']['name']}",
                        "replicaset-controller",
                    )
                active.remove(pod)
        status = clone(rs.get("status") or {})
        now = now_iso()
        if failure is not None:
            self.recorder.record(
                rs,
                "Warning",
                "FailedCreate",
                f"Error creating: {failure.message}",
                "replicaset-controller",
            )
            cond = get_condition(status, "ReplicaFailure")
            if not (cond and cond.get("message") == failure.message):
                status["conditions"] = [
                    c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"
                ] + [
                    {
                        "type": "ReplicaFailure",
                        "status": "True",
                        "lastTransitionTime": now,
                        "reason": "FailedCreate",
                        "message": failure.message,
                    }
                ]
            attempts = self._failures.get(key, 0) + 1
            self._failures[key] = attempts
            self.queue.add_after(key, min(0.5 * 2 ** (attempts - 1), 10.0))
        else:
            self._failures.pop(key, None)
            remove_condition(status, "ReplicaFailure")
        fresh = [self.registry.find(PODS, ns, p["metadata"]["name"]) or p for p in active]
        ready = sum(1 for p in fresh if pod_ready(p))
        new_status = {
            "replicas": len(fresh),
            "fullyLabeledReplicas": len(fresh),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if status.get("conditions"):
            new_status["conditions"] = status["conditions"]
        new_status = _omit_zero(new_status)
        new_status["replicas"] = len(fresh)
        if new_status != (rs.get("status") or {}):
            self.registry.mutate(
                REPLICASETS,
                ns,
                name,
                lambda r: r.__setitem__("status", new_status),
                MANAGER,
                track=False,
            )
