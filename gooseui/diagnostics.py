"""Why an environment fails: its agent container's log and the cluster's events about it.

A project whose activation failed says why in one line (`status_reason`, `status_message`);
an operator who wants more reads what `kubectl logs` and `kubectl get events` would show,
without a kubeconfig and without the secrets. Both faces (the REST routes and the pages)
call this; it knows nothing of either.

- **Logs** come from the project's newest pod (`gooseui.io/project-id`), its `goose-api`
  container, through the API server's `pods/{name}/log` subresource: the last `tail`
  lines, the previous instance after a crash, or followed as a stream.
- **Events** are the core/v1 Events of the user's namespace about the project's
  Deployment, its ReplicaSets and pods (gone ones included), its Service and route.
- **Redaction**: every line and message passes `gooseui.redaction.redact_text` with the
  agent environment's values (the agent logs its MONGODB_URL and provider key at start).
  The values are read from the agent environment's source at most every `SECRETS_SECONDS`,
  off the event loop (a Secret read, or a file read in a thread), and every value seen
  since start stays masked: a pod still running with a key changed since keeps it hidden.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from gooseui.cluster import manifests
from gooseui.cluster.agentenv import AgentEnvSource
from gooseui.cluster.client import ClusterUnavailable, KubeError, TextStream
from gooseui.cluster.environment import Environments
from gooseui.errors import Conflict, GooseUIError, UpstreamFailed
from gooseui.logs import log
from gooseui.models import Project
from gooseui.redaction import redact_text, secret_values

logger = logging.getLogger("gooseui.diagnostics")

SECRETS_SECONDS = 30.0  # how long the agent environment's values are used before a re-read
SECRETS_RETRY_SECONDS = 5.0  # after a failed read
MAX_SEEN_VALUES = 512  # values kept masked since start (a bound, not an expected count)
REDACT_IN_THREAD = 400  # lines: more are redacted off the event loop


@dataclass(frozen=True)
class LogLines:
    """Lines of the agent container's log."""

    pod: str | None  # the pod read, None when there is none
    previous: bool  # whether these are the previous container's lines
    lines: list[str]  # redacted, oldest first, each maybe prefixed by its RFC3339 timestamp
    restarts: int  # the container's restartCount (0 when unknown)


@dataclass(frozen=True)
class ClusterEvent:
    """One Kubernetes Event about one of the project's objects (aggregated: `count`)."""

    at: datetime | None  # when it last happened
    type: str  # Normal or Warning
    reason: str  # e.g. Failed, BackOff, FailedScheduling
    object: str  # e.g. "Pod/proj-abc-api-7d9-x"
    message: str  # redacted
    count: int


@dataclass(frozen=True)
class Quota:
    """A ResourceQuota of the user's namespace: its limits and what is used of them."""

    name: str
    hard: dict[str, str]
    used: dict[str, str]

    def full(self) -> list[str]:
        """The resources used up to their limit."""
        return [key for key, limit in self.hard.items() if self.used.get(key) == limit]


class Diagnostics:
    """The logs and events of projects' environments, redacted."""

    def __init__(
        self,
        environments: Environments | None,
        agent_env: AgentEnvSource | None,
        *,
        cluster_problem: str | None = None,
    ) -> None:
        self.environments = environments
        self.agent_env = agent_env
        self.cluster_problem = cluster_problem
        # every value seen since start (insertion-ordered: the oldest go first past the bound)
        self._seen: dict[str, None] = {}
        self._values: tuple[str, ...] = ()
        self._fresh_until = 0.0
        self._loading: asyncio.Task[None] | None = None

    # logs ------------------------------------------------------------------------------

    async def logs(
        self, project: Project, tail: int = 200, previous: bool = False, timestamps: bool = False
    ) -> LogLines:
        """The last `tail` lines of the agent container (of its previous instance with
        `previous`), oldest first; `timestamps` prefixes each with the kubelet's RFC 3339
        time (the agent's own lines carry one already)."""
        envs = self._envs()
        pod = await self._pod(envs, project)
        name = pod["metadata"]["name"]
        restarts = restart_count(pod)
        if previous and restarts == 0 and not _has_previous(pod):
            raise _no_previous(project, name)
        try:
            text = await envs.read_log(
                project.user_id, name, tail=tail, previous=previous, timestamps=timestamps
            )
        except KubeError as exc:
            raise _log_error(project, name, exc, previous) from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        values = await self.secret_values()
        if len(lines) > REDACT_IN_THREAD:
            redacted = await asyncio.to_thread(_redact_all, lines, values)
        else:
            redacted = _redact_all(lines, values)
        return LogLines(name, previous, redacted, restarts)

    def follow(
        self, project: Project, tail: int = 50, timestamps: bool = False, previous: bool = False
    ) -> LogFollow:
        """The agent container's last `tail` lines, then each line as it is written, redacted;
        ends when the container instance ends or the caller closes it (`aclose()`, or
        `async with`). `await stream.start()` finds the pod and opens the stream at once,
        so that its errors (no pod, a container that has not started) come before any line;
        iterating starts it too. With `previous`, the previous instance's lines, then the
        end (it writes no more), as `kubectl logs -p -f` does."""
        return LogFollow(self, project, tail, timestamps, previous)

    # events ----------------------------------------------------------------------------

    async def cluster_events(self, project: Project, limit: int = 100) -> list[ClusterEvent]:
        """The latest `limit` Kubernetes events about the project's objects, oldest first."""
        envs = self._envs()
        try:
            raw = await envs.project_events(project.user_id, project.project_id)
        except KubeError as exc:
            raise _cluster_error(exc, f"list the events of namespace {project.namespace}") from None
        values = await self.secret_values()
        # Event times have a second's resolution: ties keep the order the API server wrote
        # them in (their resourceVersion, where it is a number, as etcd's are)
        raw.sort(key=lambda item: (_event_time(item) or _EPOCH, _revision(item)))
        events = [_event(item, values) for item in raw]
        return events[-limit:] if limit > 0 else []

    # secrets ---------------------------------------------------------------------------

    async def quotas(self, project: Project) -> list[Quota]:
        """The quotas of the project's namespace (a `QuotaExceeded` failure names one)."""
        envs = self._envs()
        try:
            items = await envs.quotas(project.user_id)
        except KubeError as exc:
            raise _cluster_error(exc, "read the namespace's quotas") from None
        return [
            Quota(
                (item.get("metadata") or {}).get("name", "?"),
                {str(k): str(v) for k, v in ((item.get("status") or {}).get("hard") or {}).items()},
                {str(k): str(v) for k, v in ((item.get("status") or {}).get("used") or {}).items()},
            )
            for item in items
        ]

    async def secret_values(self) -> tuple[str, ...]:
        """The values to mask: those of the agent environment (read again at most every
        SECRETS_SECONDS, concurrent callers sharing one read) and every one seen before."""
        if self.agent_env is not None and time.monotonic() >= self._fresh_until:
            if self._loading is None or self._loading.done():
                self._loading = asyncio.create_task(self._load(), name="diagnostics secrets")
            await asyncio.shield(self._loading)
        return self._values

    def cached_values(self) -> tuple[str, ...]:
        """The values known now, without waiting; a stale set is refreshed in the background."""
        if (
            self.agent_env is not None
            and time.monotonic() >= self._fresh_until
            and (self._loading is None or self._loading.done())
        ):
            self._loading = asyncio.create_task(self._load(), name="diagnostics secrets")
        return self._values

    async def _load(self) -> None:
        assert self.agent_env is not None
        try:
            environment = await self.agent_env.load()
        except Exception as exc:  # AgentMisconfigured, KubeError, ClusterUnavailable, …
            # the log is needed most when the environment is broken: patterns and the
            # values seen before still apply
            log(
                logger,
                "diagnostics.secrets_unavailable",
                logging.WARNING,
                error=getattr(exc, "message", None) or getattr(exc, "detail", None) or str(exc),
            )
            self._fresh_until = time.monotonic() + SECRETS_RETRY_SECONDS
            return
        for value in secret_values(environment.values):
            self._seen.pop(value, None)
            self._seen[value] = None
        while len(self._seen) > MAX_SEEN_VALUES:
            del self._seen[next(iter(self._seen))]
        self._values = tuple(self._seen)
        self._fresh_until = time.monotonic() + SECRETS_SECONDS

    # helpers ---------------------------------------------------------------------------

    def _envs(self) -> Environments:
        if self.environments is None:
            raise ClusterUnavailable(
                self.cluster_problem
                or "No Kubernetes cluster is configured, so there are no logs or events to show."
            )
        return self.environments

    async def _pod(self, envs: Environments, project: Project) -> dict[str, Any]:
        try:
            pod = await envs.project_pod(project.user_id, project.project_id)
        except KubeError as exc:
            raise _cluster_error(exc, f"list the pods of namespace {project.namespace}") from None
        if pod is None:
            raise Conflict(
                f"Project {project.name} has no running pod; activate it to see its logs "
                "(its cluster events may say why an activation failed).",
                code="NoPod",
            )
        return pod


class LogFollow:
    """A followed log (`Diagnostics.follow`): an async iterator of redacted lines."""

    def __init__(
        self,
        diagnostics: Diagnostics,
        project: Project,
        tail: int,
        timestamps: bool,
        previous: bool = False,
    ) -> None:
        self.diagnostics = diagnostics
        self.project = project
        self.tail = tail
        self.timestamps = timestamps
        self.previous = previous
        self.pod: str | None = None  # the pod followed, once started
        self.restarts = 0
        self._stream: TextStream | None = None
        self._closed = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Find the pod and open the stream (once); raises the errors of `logs`."""
        async with self._lock:
            if self._stream is not None or self._closed:
                return
            diagnostics, project = self.diagnostics, self.project
            envs = diagnostics._envs()
            pod = await diagnostics._pod(envs, project)
            name = pod["metadata"]["name"]
            if self.previous and restart_count(pod) == 0 and not _has_previous(pod):
                raise _no_previous(project, name)
            await diagnostics.secret_values()
            try:
                stream = await envs.follow_log(
                    project.user_id,
                    name,
                    tail=self.tail,
                    timestamps=self.timestamps,
                    previous=self.previous,
                )
            except KubeError as exc:
                raise _log_error(project, name, exc, self.previous) from None
            if self._closed:  # closed while opening
                await stream.aclose()
                return
            self._stream, self.pod, self.restarts = stream, name, restart_count(pod)

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self._stream is None:
            await self.start()
        if self._stream is None:  # closed
            raise StopAsyncIteration
        line = await self._stream.__anext__()
        return redact_text(line, self.diagnostics.cached_values())

    async def aclose(self) -> None:
        """Close the upstream stream (idempotent)."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    async def __aenter__(self) -> LogFollow:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


# -- helpers ------------------------------------------------------------------------------

_EPOCH = datetime.min.replace(tzinfo=UTC)


def _redact_all(lines: list[str], values: tuple[str, ...]) -> list[str]:
    return [redact_text(line, values) for line in lines]


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == manifests.CONTAINER_NAME:
            return dict(status)
    return {}


def restart_count(pod: dict[str, Any]) -> int:
    """The agent container's restartCount (0 when the pod does not say)."""
    try:
        return int(_container_status(pod).get("restartCount") or 0)
    except (TypeError, ValueError):
        return 0


def _has_previous(pod: dict[str, Any]) -> bool:
    last = (_container_status(pod).get("lastState") or {}).get("terminated") or {}
    return bool(last.get("containerID"))


def _no_previous(project: Project, pod: str) -> Conflict:
    return Conflict(
        f"The agent container of project {project.name} (pod {pod}) has not restarted: "
        "there is no previous container to show; ask without previous for its current log.",
        code="NoPreviousContainer",
    )


def _log_error(project: Project, pod: str, exc: KubeError, previous: bool) -> GooseUIError:
    """What the API server's refusal of a log read means for the operator."""
    message = exc.message
    if exc.status == 400 and "previous terminated container" in message:
        return _no_previous(project, pod)
    if exc.status == 400 and ("waiting to start" in message or "ContainerCreating" in message):
        return Conflict(
            f"The agent container of project {project.name} has not started, so it has no "
            f"log yet ({message}); the project's cluster events say why.",
            code="ContainerNotStarted",
        )
    if exc.status == 404:
        return Conflict(
            f"The pod {pod} of project {project.name} is gone; activate the project to see "
            "its logs.",
            code="NoPod",
        )
    if exc.status == 400:
        return Conflict(
            f"The log of pod {pod} cannot be read now: {message}", code="LogUnavailable"
        )
    return _cluster_error(exc, f"read the log of pod {pod}")


def _cluster_error(exc: KubeError, what: str) -> GooseUIError:
    if exc.status in (401, 403):
        return UpstreamFailed(
            f"The console may not {what} ({exc.status} {exc.reason}: {exc.message}); grant "
            "its credentials get on pods/log and list on pods and events there.",
            code="Forbidden",
        )
    return UpstreamFailed(
        f"The API server refused to {what} ({exc.status} {exc.reason}: {exc.message}).",
        code="ClusterError",
    )


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _event_time(item: dict[str, Any]) -> datetime | None:
    """When an event last happened: a series' last observation, `lastTimestamp`, else when
    it was first seen."""
    return (
        _parse_time((item.get("series") or {}).get("lastObservedTime"))
        or _parse_time(item.get("lastTimestamp"))
        or _parse_time(item.get("eventTime"))
        or _parse_time(item.get("firstTimestamp"))
        or _parse_time((item.get("metadata") or {}).get("creationTimestamp"))
    )


def _revision(item: dict[str, Any]) -> int:
    version = str((item.get("metadata") or {}).get("resourceVersion") or "")
    return int(version) if version.isdigit() else 0


def _event(item: dict[str, Any], values: tuple[str, ...]) -> ClusterEvent:
    ref = item.get("involvedObject") or {}
    series = item.get("series") or {}
    at = _event_time(item)
    try:
        count = int(series.get("count") or item.get("count") or 1)
    except (TypeError, ValueError):
        count = 1
    return ClusterEvent(
        at=at,
        type=str(item.get("type") or "Normal"),
        reason=str(item.get("reason") or ""),
        object=f"{ref.get('kind') or '?'}/{ref.get('name') or '?'}",
        message=redact_text(str(item.get("message") or ""), values),
        count=count,
    )
