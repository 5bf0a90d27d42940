"""Is a project's Deployment ready, still starting, or failed, and why?

Pure functions over the Deployment and its pods as the API server returns them, so the
decision can be made again on every watch event. Failures are read from three layers, the
earliest that shows them: Deployment conditions (quota and Pod Security rejections never
produce a pod), pod conditions (unschedulable) and container states (image pulls, crash
loops, bad configuration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gooseui.models import Step

Obj = dict[str, Any]

PULL_BACKOFF = {"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
PULL_PERMANENT = re.compile(
    r"not found|manifest unknown|unauthorized|denied|forbidden|"
    r"invalid reference|no such host",
    re.IGNORECASE,
)
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class Verdict:
    """What the objects say: ready, failed (with a reason code), or a step still running."""

    ready: bool = False
    reason: str | None = None
    message: str | None = None
    step: Step = Step.WAITING
    progress: str = "Waiting for the Deployment"

    @property
    def failed(self) -> bool:
        return self.reason is not None


def _condition(obj: Obj | None, kind: str) -> Obj | None:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def deployment_failure(deployment: Obj) -> Verdict | None:
    """Failures only the Deployment shows: rejected pod creation, a missed progress deadline."""
    failure = _condition(deployment, "ReplicaFailure")
    if failure and failure.get("status") == "True":
        message = failure.get("message") or failure.get("reason") or "pod creation failed"
        if "exceeded quota" in message or "quota" in message.lower():
            return Verdict(
                reason="QuotaExceeded",
                message=(
                    f"The namespace's resource quota does not allow the agent's pod: {message}"
                ),
            )
        if "PodSecurity" in message:
            return Verdict(
                reason="PodSecurityRejected",
                message=(f"The pod was rejected by the namespace's Pod Security policy: {message}"),
            )
        return Verdict(reason="FailedCreate", message=f"The pod could not be created: {message}")
    progressing = _condition(deployment, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Verdict(
            reason="ProgressDeadlineExceeded",
            message=(
                "The Deployment did not become ready within its progress deadline: "
                f"{progressing.get('message') or 'no further detail'}"
            ),
        )
    return None


def pod_failure(pod: Obj, unschedulable_is_failure: bool) -> Verdict | None:
    """Failures a pod shows: scheduling, image pulls, crash loops, container configuration."""
    scheduled = _condition(pod, "PodScheduled")
    if (
        scheduled
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
        and unschedulable_is_failure
    ):
        return Verdict(
            reason="Unschedulable",
            message=(
                f"No node can run the agent's pod: {scheduled.get('message') or 'unschedulable'}"
            ),
        )
    status = pod.get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        why = waiting.get("reason")
        detail = waiting.get("message") or ""
        image = container.get("image") or "the image"
        if why in PULL_BACKOFF or (why == "ErrImagePull" and PULL_PERMANENT.search(detail)):
            return Verdict(
                reason="ImagePullFailed",
                message=(
                    f"The image {image} cannot be pulled ({why}"
                    + (f": {detail}" if detail else "")
                    + "). Check ACR_IMAGE and registry access."
                ),
            )
        if why == "CrashLoopBackOff":
            last = (container.get("lastState") or {}).get("terminated") or {}
            exit_code = last.get("exitCode")
            last_reason = last.get("reason")
            restarts = container.get("restartCount", 0)
            bits = ", ".join(
                str(b)
                for b in (f"exit code {exit_code}" if exit_code is not None else None, last_reason)
                if b
            )
            hint = (
                " The container ran out of memory; raise GOOSEUI_MEMORY_LIMIT."
                if last_reason == "OOMKilled"
                else ""
            )
            said = last_words(last.get("message") or "")
            return Verdict(
                reason="CrashLoop",
                message=(
                    f"The agent container keeps crashing ({bits or 'no exit status'}); "
                    f"restarted {restarts} time{'s' if restarts != 1 else ''}.{hint}"
                    + (f" Its last words: {said}" if said else "")
                ),
            )
        if why in CONFIG_ERRORS:
            return Verdict(
                reason="ContainerConfigError",
                message=(
                    f"The agent container cannot be started ({why}: {detail or 'no detail'})."
                ),
            )
    return None


def last_words(text: str, lines: int = 6, limit: int = 600) -> str:
    """The end of a termination message (the agent's last log lines), on one line.

    Log lines carry timestamps and levels; the operator needs what was said, from the
    process's final `Error:` report when there is one, each line cut short. The caller must
    redact secrets: an agent logs its MongoDB URL and provider key.
    """
    kept = []
    for line in text.strip().splitlines():
        line = line.strip()
        if not line or line == "Caused by:":
            continue
        # `2026-…Z  INFO target: message` -> `message`
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0][:4].isdigit() and parts[1] in LOG_LEVELS:
            line = parts[2].split(": ", 1)[-1]
        kept.append(line if len(line) <= 160 else line[:159] + "…")
    report = max((i for i, line in enumerate(kept) if line.startswith("Error: ")), default=None)
    kept = kept[report : report + lines] if report is not None else kept[-lines:]
    said = " | ".join(kept)
    return said if len(said) <= limit else said[: limit - 1] + "…"


LOG_LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}


def _pod_ready(pod: Obj) -> bool:
    ready = _condition(pod, "Ready")
    return bool(
        ready
        and ready.get("status") == "True"
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    )


def _pod_progress(pod: Obj) -> tuple[Step, str]:
    status = pod.get("status") or {}
    scheduled = _condition(pod, "PodScheduled")
    if not scheduled or scheduled.get("status") != "True":
        if scheduled and scheduled.get("reason") == "Unschedulable":
            return Step.UNSCHEDULABLE, f"Waiting for a node: {scheduled.get('message')}"
        return Step.SCHEDULING, "Scheduling the pod"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") == "ErrImagePull":
            return Step.PULLING, f"Pulling the image failed, retrying: {waiting.get('message', '')}"
        if waiting.get("reason") == "ContainerCreating":
            return Step.PULLING, "Pulling the image and creating the container"
        if "running" in state:
            return Step.STARTING, "Container running; waiting for the agent's health check"
    if status.get("phase") == "Pending":
        return Step.PULLING, "Pulling the image and creating the container"
    return Step.STARTING, "Starting the container"


def evaluate(
    deployment: Obj | None,
    pods: list[Obj],
    replicas: int = 1,
    unschedulable_is_failure: bool = True,
) -> Verdict:
    """The state of an activation, decided from the objects as they are now."""
    if deployment is None:
        return Verdict(step=Step.APPLYING, progress="Waiting for the Deployment to appear")
    failure = deployment_failure(deployment)
    if failure:
        return failure
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    for pod in live:
        failure = pod_failure(pod, unschedulable_is_failure)
        if failure:
            return failure
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    observed = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    if (
        observed
        and status.get("updatedReplicas", 0) >= replicas
        and status.get("availableReplicas", 0) >= replicas
        and status.get("readyReplicas", 0) >= replicas
        and sum(_pod_ready(p) for p in live) >= replicas
    ):
        return Verdict(ready=True, step=Step.READY, progress="The pod is ready")
    if not live:
        return Verdict(step=Step.SCHEDULING, progress="Waiting for the pod to be created")
    step, progress = _pod_progress(live[0])
    return Verdict(step=step, progress=progress)
