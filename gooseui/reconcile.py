"""Reconciliation of MongoDB with the cluster (DESIGN section 4), at start and then again.

A record is the desired state; the Deployments the console manages are the actual one. A
pass compares them and acts until they agree, level-triggered: whatever left them apart (a
console that stopped mid-transition, a status write MongoDB lost, a scale-down the API
server refused, kubectl) the next pass sees only the difference.

- A transition no task works on (`activating`, `deactivating`) is resumed: the activation
  runs again from the top (every step is idempotent), the deactivation likewise.
- An `active` project whose Deployment is gone (its namespace too, say), at 0, or running
  another image is activated again; one scaled above 1 is scaled back to 1.
- A project that should not run (`inactive`, `failed`) but whose Deployment has replicas is
  scaled to 0; its status and failure reason stay as they are.
- What repair would destroy or guess at is reported, never acted on: an interrupted
  deletion becomes `failed` (`Interrupted`) for the operator to repeat, and Deployments
  without a record are listed as orphans. Nothing is ever deleted here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC
from typing import Any

from gooseui.cluster import manifests
from gooseui.cluster.environment import Environments, replicas_of
from gooseui.errors import Conflict, GooseUIError
from gooseui.lifecycle import Lifecycle
from gooseui.logs import log
from gooseui.models import Project, Status, Step
from gooseui.store import ProjectStore, now

logger = logging.getLogger("gooseui.reconcile")

MAX_FIXED = 100  # the repairs a report keeps (the latest)
PASS_SECONDS = 30.0  # a full pass that takes longer is abandoned (and reported)
DRIFT_DEBOUNCE = 0.2  # a burst of watch events about a Deployment makes one look at it


@dataclass
class Report:
    checked: int = 0
    fixed: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> str:
        if self.error:
            return f"reconciliation skipped: {self.error}"
        return (
            f"{self.checked} projects checked, {len(self.fixed)} fixed, "
            f"{len(self.orphans)} orphaned objects"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


async def reconcile(
    store: ProjectStore,
    envs: Environments,
    lifecycle: Lifecycle,
    reported: set[str] | None = None,
) -> Report:
    """One pass; `reported` holds the orphans already logged (not logged again)."""
    report = Report()
    # only namespaces with this console's prefix are its own; another console may share the cluster
    prefix = envs.settings.namespace_prefix
    deployments = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d
        for d in await envs.list_managed_deployments()
        if d["metadata"]["namespace"].startswith(prefix)
    }
    cache = envs.informers["Deployment"]
    live = cache if cache.synced.is_set() and not cache.scoped else None
    known: set[tuple[str, str]] = set()
    for doc in await store.list_all():
        report.checked += 1
        uid, pid = doc["user_id"], doc["project_id"]
        key = (envs.namespace(uid), manifests.object_name(pid))
        known.add(key)
        if lifecycle.running(uid, pid):
            continue  # this process is working on it: its task will settle the status
        # the cache as it is now, not as it was when the pass began: a project activated
        # meanwhile has a record that says active and a Deployment the snapshot lacks
        current = live.get(*key) if live is not None else deployments.get(key)
        await _converge_one(store, envs, lifecycle, doc, current, report)
    for key in deployments.keys() - known:
        report.orphans.append(f"{key[0]}/{key[1]}")
    seen = reported if reported is not None else set()
    for line in report.orphans:
        if line not in seen:
            _log_orphan(line)
    seen.update(report.orphans)
    if reported is None or report.fixed:
        log(logger, "reconcile.done", summary=report.summary())
    return report


async def reconcile_projects(
    store: ProjectStore,
    envs: Environments,
    lifecycle: Lifecycle,
    changed: dict[tuple[str, str], tuple[str, str]],
    report: Report,
) -> None:
    """Converge only the projects whose Deployments the watch saw change, into `report`.

    `changed` maps each Deployment (namespace, name) to the (user, project) its labels name.

    This is what notices a Deployment deleted, scaled or edited behind the console's back
    within a second or two, without reading every record; the periodic full pass stays as
    the net under it (a change the watch missed, a record MongoDB changed).
    """
    deployments = envs.informers["Deployment"]
    for (namespace, name), (uid, pid) in sorted(changed.items()):
        deployment = deployments.get(namespace, name)
        if lifecycle.running(uid, pid):
            continue
        doc = await store.get(uid, pid)
        line = f"{namespace}/{name}"
        if doc is None:
            if deployment is not None and line not in report.orphans:
                report.orphans.append(line)
                _log_orphan(line)
            elif deployment is None and line in report.orphans:
                report.orphans.remove(line)
            continue
        fixed = len(report.fixed)
        await _converge_one(store, envs, lifecycle, doc, deployment, report)
        for entry in report.fixed[fixed:]:
            log(logger, "reconcile.drift", user_id=uid, project_id=pid, fixed=entry)
        del report.fixed[: max(0, len(report.fixed) - MAX_FIXED)]


def _image(deployment: dict[str, Any] | None) -> str | None:
    containers = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    first = (containers.get("containers") or [{}])[0]
    return first.get("image")


def _log_orphan(line: str) -> None:
    log(
        logger,
        "reconcile.orphan",
        logging.WARNING,
        deployment=line,
        note="no project record; left untouched",
    )


async def _converge_one(
    store: ProjectStore,
    envs: Environments,
    lifecycle: Lifecycle,
    doc: dict[str, Any],
    deployment: dict[str, Any] | None,
    report: Report,
) -> None:
    """`_converge`, where one project's trouble is not the pass's."""
    try:
        await _converge(store, envs, lifecycle, doc, deployment, report)
    except Conflict:
        pass  # another replica holds the work on it, or it changed meanwhile
    except Exception as exc:
        log(
            logger,
            "reconcile.repair_failed",
            logging.WARNING,
            user_id=doc["user_id"],
            project_id=doc["project_id"],
            error=getattr(exc, "detail", None) or str(exc),
        )


def _action(doc: dict[str, Any], deployment: dict[str, Any] | None, replica: str) -> str | None:
    """What a record and its Deployment call for, if anything (a pure decision)."""
    status = Status(doc["status"])
    running = replicas_of(deployment) if deployment is not None else 0
    expires = doc.get("lease_expires")
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if doc.get("lease_holder") not in (None, replica) and expires and expires > now():
        return None  # another replica works on it, and is alive
    if status in (Status.ACTIVATING, Status.DEACTIVATING, Status.DELETING):
        return str(status)
    if status == Status.ACTIVE and deployment is None:
        return "gone"
    if status == Status.ACTIVE and not running:
        return "stopped"
    if status == Status.ACTIVE and doc.get("applied_image") not in (None, _image(deployment)):
        return "image"
    if status == Status.ACTIVE and running > 1:
        return "scaled"
    if status in (Status.INACTIVE, Status.FAILED) and running:
        return "running"
    return None


async def _converge(
    store: ProjectStore,
    envs: Environments,
    lifecycle: Lifecycle,
    doc: dict[str, Any],
    deployment: dict[str, Any] | None,
    report: Report,
) -> None:
    """Act on what `doc` and `deployment` call for, after reading both again.

    The record is read again, and the Deployment from the cache as it is now, before
    anything is done: a pass works from a snapshot, and a project that moved on since (an
    activation that finished, a deactivation under way) needs nothing.
    """
    if _action(doc, deployment, lifecycle.replica) is None:
        return
    uid, pid = doc["user_id"], doc["project_id"]
    fresh = await store.get(uid, pid)
    if fresh is None or lifecycle.running(uid, pid):
        return
    cache = envs.informers["Deployment"]
    if cache.covers(envs.namespace(uid)):
        deployment = cache.get(envs.namespace(uid), manifests.object_name(pid))
    action = _action(fresh, deployment, lifecycle.replica)
    if action in ("gone", "stopped"):
        # a re-activation is no small act: the API server confirms what the cache shows
        deployment = await envs.read_deployment(uid, pid)
        action = _action(fresh, deployment, lifecycle.replica)
    if action is None:
        return
    doc = fresh
    status = Status(doc["status"])
    label = f"{uid}/{pid}"
    running = replicas_of(deployment) if deployment is not None else 0

    if action == "activating":
        # the operator asked for it to run and nobody is making it so: make it so
        await lifecycle.activate(Project.from_document(doc), wait=False)
        report.fixed.append(f"{label}: activating with no task -> activation resumed")
    elif action == "deactivating":
        await lifecycle.deactivate(Project.from_document(doc), wait=False)
        report.fixed.append(f"{label}: deactivating with no task -> deactivation resumed")
    elif action == "deleting":
        message = "The deletion was interrupted (the console restarted); delete again."
        failed = {"status": str(Status.FAILED), "status_reason": "Interrupted"}
        # `free`: never over a deletion another replica is working on
        if await store.compare_and_set(
            uid,
            pid,
            [status],
            {**failed, "status_message": message},
            holder=lifecycle.replica,
            lease="free",
        ):
            lifecycle.publish(doc, Status.FAILED, Step.RECONCILED, message, "Interrupted")
            report.fixed.append(f"{label}: deleting -> failed (Interrupted)")
    elif action in ("gone", "stopped"):
        # the operator wants it running and nobody else is making it so: activate again
        if action == "gone":
            found = "its Deployment is gone"
            why = "The environment's Deployment was gone from the cluster; re-creating it."
        else:
            found = "scaled to 0"
            why = "The environment was scaled to 0 outside the console; starting it again."
        await lifecycle.repair(Project.from_document(doc), why)
        report.fixed.append(f"{label}: active but {found} -> activated again")
    elif action == "image":
        why = (
            f"The environment's image was changed outside the console (to "
            f"{_image(deployment)!r}); applying the console's image again."
        )
        await lifecycle.repair(Project.from_document(doc), why)
        report.fixed.append(f"{label}: image edited -> applied again")
    elif action in ("scaled", "running"):
        # a scale is no transition, but it must not cross one: the pass holds the project's
        # lease meanwhile (an activation another replica starts now waits for it), under a
        # holder of its own so that this replica's own activations wait too
        guard = f"{lifecycle.replica}/reconciler"
        if not await store.compare_and_set(uid, pid, [status], {}, holder=guard, lease="take"):
            return
        try:
            if lifecycle.running(uid, pid):
                return
            if action == "scaled":
                await envs.scale(uid, pid, 1)
                report.fixed.append(f"{label}: active with {running} replicas -> scaled to 1")
            else:
                # e.g. the scale-down of a failed activation was refused: its pod must not
                # run on
                await envs.scale(uid, pid, 0)
                report.fixed.append(
                    f"{label}: {status} but ran {running} replica(s) -> scaled to 0"
                )
            log(logger, "reconcile.scaled_down", user_id=uid, project_id=pid, replicas=running)
        finally:
            await store.compare_and_set(uid, pid, [status], {}, holder=guard, lease="release")


class Reconciler:
    """Keeps MongoDB and the cluster in agreement, for the console's lifetime.

    A full pass at start and every `interval` seconds (0: at start only), and in between,
    for every Deployment the shared watch sees change, a look at just that project: drift
    is noticed within `DRIFT_DEBOUNCE` of the change reaching the console.
    """

    def __init__(
        self, store: ProjectStore, envs: Environments, lifecycle: Lifecycle, interval: float
    ) -> None:
        self.store = store
        self.envs = envs
        self.lifecycle = lifecycle
        self.interval = interval
        self.report: Report | None = None
        self._reported: set[str] = set()  # orphans already logged
        self._changed: dict[tuple[str, str], tuple[str, str]] = {}
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.full_pass()
        self.envs.informers["Deployment"].on_change(self._seen)
        self._tasks.append(asyncio.create_task(self._follow_drift(), name="drift"))
        if self.interval > 0:
            self._tasks.append(asyncio.create_task(self._every_interval(), name="reconciler"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def full_pass(self) -> None:
        try:
            async with asyncio.timeout(PASS_SECONDS):
                report = await reconcile(self.store, self.envs, self.lifecycle, self._reported)
            # the repairs since start stay listed (the latest MAX_FIXED), whichever pass made them
            earlier = self.report.fixed if self.report is not None else []
            report.fixed = (earlier + report.fixed)[-MAX_FIXED:]
            self.report = report
        except Exception as exc:  # e.g. RBAC refusing a cluster-wide list: report, serve on
            detail = (
                exc.detail
                if isinstance(exc, GooseUIError)
                else "timed out"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            earlier = self.report.fixed if self.report is not None else []
            self.report = Report(fixed=earlier, error=detail)
            log(logger, "reconcile.skipped", logging.WARNING, error=detail)

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.full_pass()

    def _seen(self, kind: str, deployment: dict[str, Any]) -> None:
        meta = deployment.get("metadata") or {}
        labels = meta.get("labels") or {}
        uid, pid = labels.get(manifests.LABEL_USER), labels.get(manifests.LABEL_PROJECT)
        namespace = str(meta.get("namespace") or "")
        if uid and pid and namespace.startswith(self.envs.settings.namespace_prefix):
            self._changed[(namespace, str(meta.get("name")))] = (uid, pid)
            self._kick.set()

    async def _follow_drift(self) -> None:
        while True:
            await self._kick.wait()
            await asyncio.sleep(DRIFT_DEBOUNCE)
            self._kick.clear()
            changed, self._changed = self._changed, {}
            if self.report is None:
                self.report = Report()
            try:
                await reconcile_projects(
                    self.store, self.envs, self.lifecycle, changed, self.report
                )
            except Exception as exc:  # MongoDB away, say: the full pass tries again
                log(logger, "reconcile.drift_failed", logging.WARNING, error=str(exc))
