"""Start-up reconciliation of MongoDB with the cluster (DESIGN section 4).

A console that stopped mid-transition leaves a status nobody will finish; an operator with
kubectl may have removed or scaled objects. At start the console compares its records with
the Deployments it manages, fixes statuses from what the cluster says, and reports objects
it has no record of. It changes statuses and may scale an interrupted activation back to 0;
it never deletes anything.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from gooseui.cluster import manifests
from gooseui.cluster.environment import Environments, replicas_of
from gooseui.events import EventBus, ProjectEvent
from gooseui.logs import log
from gooseui.models import Status
from gooseui.store import ProjectStore

logger = logging.getLogger("gooseui.reconcile")


@dataclass
class Report:
    checked: int = 0
    fixed: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> str:
        if self.error:
            return f"reconciliation skipped: {self.error}"
        return (
            f"{self.checked} projects checked, {len(self.fixed)} fixed, "
            f"{len(self.drift)} drifted, {len(self.orphans)} orphaned objects"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


async def reconcile(store: ProjectStore, envs: Environments, bus: EventBus) -> Report:
    report = Report()
    # only namespaces with this console's prefix are its own; another console may share the cluster
    prefix = envs.settings.namespace_prefix
    deployments = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d
        for d in await envs.list_managed_deployments()
        if d["metadata"]["namespace"].startswith(prefix)
    }
    known: set[tuple[str, str]] = set()
    for doc in await store.list_all():
        report.checked += 1
        uid, pid, status = doc["user_id"], doc["project_id"], doc["status"]
        key = (envs.namespace(uid), manifests.object_name(pid))
        known.add(key)
        deployment = deployments.get(key)
        label = f"{uid}/{pid}"

        async def set_status(
            new: Status,
            reason: str | None,
            message: str | None,
            extra: dict[str, Any] | None = None,
            *,
            _doc: dict = doc,
        ) -> None:
            changes = {
                "status": str(new),
                "status_reason": reason,
                "status_message": message,
                **(extra or {}),
            }
            if await store.compare_and_set(
                _doc["user_id"], _doc["project_id"], [Status(_doc["status"])], changes
            ):
                bus.publish(
                    ProjectEvent(
                        _doc["user_id"],
                        _doc["project_id"],
                        str(new),
                        "reconciled",
                        message or str(new),
                        reason,
                    )
                )

        if status == Status.ACTIVATING:
            # nobody finishes the activation now: back to 0 so that `failed` is the truth
            if deployment and replicas_of(deployment):
                await envs.scale(uid, pid, 0)
            await set_status(
                Status.FAILED,
                "Interrupted",
                "The console restarted during activation; activate again.",
                {"desired_replicas": 0, "endpoint": None},
            )
            report.fixed.append(f"{label}: activating -> failed (Interrupted)")
        elif status == Status.DEACTIVATING:
            if deployment and replicas_of(deployment):
                await envs.scale(uid, pid, 0)
            await set_status(Status.INACTIVE, None, None, {"endpoint": None})
            report.fixed.append(f"{label}: deactivating -> inactive")
        elif status == Status.DELETING:
            await set_status(
                Status.FAILED, "Interrupted", "The console restarted during deletion; delete again."
            )
            report.fixed.append(f"{label}: deleting -> failed (Interrupted)")
        elif status == Status.ACTIVE:
            if deployment is None:
                await set_status(
                    Status.FAILED,
                    "Drift",
                    "The environment's Deployment is gone from the cluster.",
                    {"endpoint": None, "desired_replicas": 0},
                )
                report.drift.append(f"{label}: active but its Deployment is gone")
            elif not replicas_of(deployment):
                await set_status(
                    Status.FAILED,
                    "Drift",
                    "The environment was scaled to 0 outside the console.",
                    {"endpoint": None, "desired_replicas": 0},
                )
                report.drift.append(f"{label}: active but scaled to 0")
        elif deployment is not None and replicas_of(deployment):
            report.drift.append(
                f"{label}: {status} but its Deployment runs {replicas_of(deployment)} replica(s)"
            )
    for key in deployments.keys() - known:
        report.orphans.append(f"{key[0]}/{key[1]}")
    for line in report.drift:
        log(logger, "reconcile.drift", logging.WARNING, detail=line)
    for line in report.orphans:
        log(
            logger,
            "reconcile.orphan",
            logging.WARNING,
            deployment=line,
            note="no project record; left untouched",
        )
    log(logger, "reconcile.done", summary=report.summary())
    return report
