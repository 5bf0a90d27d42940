"""Container logs and the pod `log` subresource, as the kubelet and API server serve them.

The console shows an agent's output when a pod will not become ready (the real agent
says why it exits, and logs its configuration, secrets included, at INFO), so the
simulator keeps every container instance's lines with their timestamps, the current and
the previous instance (`--previous` after a crash), and answers the subresource with the
real query parameters and the real errors (a container waiting to start is a 400, not an
empty 200). Lines are stored as written: redaction is the console's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from .errors import ApiError, bad_request, invalid
from .util import parse_iso

MAX_LINES = 2000  # per container instance (the kubelet rotates at 10 MiB; enough here)


def stamp(ns: int) -> str:
    """RFC 3339 with nine fractional digits, the kubelet's `timestamps=true` format."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@dataclass(frozen=True)
class LogLine:
    at: float  # seconds since the epoch
    stamp: str
    text: str


class ContainerLog:
    """The output of one container instance (one containerID), with followers."""

    def __init__(self, container_id: str, limit: int = MAX_LINES) -> None:
        self.container_id = container_id
        self.lines: deque[LogLine] = deque(maxlen=limit)
        self.written = 0  # lines ever written; the oldest kept is `written - len(lines)`
        self.ended = False
        self._changed: asyncio.Event | None = None

    def write(self, text: str) -> None:
        """One write of the process (split into lines, as the runtime's log file does)."""
        if self.ended:
            return
        for part in str(text).split("\n"):
            ns = time.time_ns()
            self.lines.append(LogLine(ns / 1e9, stamp(ns), part))
            self.written += 1
        self._wake()

    def end(self) -> None:
        """The process exited: followers finish."""
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def changed(self) -> None:
        if self.ended:
            return
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    def since(self, index: int) -> list[LogLine]:
        """Lines with absolute index >= `index` (those still kept), in O(new lines)."""
        fresh = min(self.written - index, len(self.lines))
        if fresh <= 0:
            return []
        return list(itertools.islice(reversed(self.lines), fresh))[::-1]


@dataclass
class LogOptions:
    """`PodLogOptions` from the query string."""

    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: float | None = None
    limit_bytes: int | None = None


def _bool(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "")
    if value in ("", "false", "False", "0"):
        return False
    if value in ("true", "True", "1"):
        return True
    raise bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _int(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None


def parse_options(query: dict[str, str], pod_name: str) -> LogOptions:
    """Decode and validate (ValidatePodLogOptions: 422 PodLogOptions) the query."""
    options = LogOptions(
        container=query.get("container", ""),
        follow=_bool(query, "follow"),
        previous=_bool(query, "previous"),
        timestamps=_bool(query, "timestamps"),
        tail_lines=_int(query, "tailLines"),
        since_seconds=_int(query, "sinceSeconds"),
        limit_bytes=_int(query, "limitBytes"),
    )
    if query.get("sinceTime"):
        try:
            options.since_time = parse_iso(query["sinceTime"])
        except ValueError:
            raise bad_request(
                f'parsing time "{query["sinceTime"]}" as "2006-01-02T15:04:05Z07:00": cannot parse'
            ) from None
    causes: list[tuple[str, str, str]] = []
    if options.tail_lines is not None and options.tail_lines < 0:
        causes.append(
            (
                "FieldValueInvalid",
                "tailLines",
                f"Invalid value: {options.tail_lines}: must be greater than or equal to 0",
            )
        )
    if options.limit_bytes is not None and options.limit_bytes < 1:
        causes.append(
            (
                "FieldValueInvalid",
                "limitBytes",
                f"Invalid value: {options.limit_bytes}: must be greater than 0",
            )
        )
    if options.since_seconds is not None and options.since_time is not None:
        causes.append(
            (
                "FieldValueForbidden",
                "",
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
            )
        )
    elif options.since_seconds is not None and options.since_seconds < 1:
        causes.append(
            (
                "FieldValueInvalid",
                "sinceSeconds",
                f"Invalid value: {options.since_seconds}: must be greater than 0",
            )
        )
    if causes:
        raise invalid("PodLogOptions", "", pod_name, causes)
    return options


def choose_container(pod: dict[str, object], wanted: str) -> str:
    """The container a log request means (validateContainer of the API server)."""
    spec = pod.get("spec") or {}
    assert isinstance(spec, dict)
    name = (pod.get("metadata") or {}).get("name", "")  # type: ignore[union-attr]
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    others = [c.get("name", "") for c in (spec.get("initContainers") or [])] + [
        c.get("name", "") for c in (spec.get("ephemeralContainers") or [])
    ]
    if not wanted:
        if len(containers) == 1:
            return containers[0]
        if not containers:
            raise bad_request(f"a container name must be specified for pod {name}")
        listed = "[" + " ".join(containers + others) + "]"
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: {listed}"
        )
    if wanted not in containers and wanted not in others:
        raise bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


def _select(log: ContainerLog, options: LogOptions) -> tuple[list[LogLine], int]:
    """The lines a request returns first, and the index to follow from."""
    lines = list(log.lines)
    end = log.written
    if options.tail_lines is not None:
        lines = lines[len(lines) - options.tail_lines :] if options.tail_lines else []
    since = options.since_time
    if options.since_seconds is not None:
        since = time.time() - options.since_seconds
    if since is not None:
        lines = [line for line in lines if line.at >= since]
    return lines, end


def _render(lines: list[LogLine], timestamps: bool) -> bytes:
    if timestamps:
        return "".join(f"{line.stamp} {line.text}\n" for line in lines).encode()
    return "".join(line.text + "\n" for line in lines).encode()


async def serve(
    request: web.Request, log: ContainerLog | None, options: LogOptions
) -> web.StreamResponse:
    """Answer one log request: the selected lines, then (follow) new lines until the
    container instance ends or the client goes away."""
    if log is None:
        return web.Response(body=b"", content_type="text/plain")
    lines, cursor = _select(log, options)
    body = _render(lines, options.timestamps)
    budget = options.limit_bytes
    if budget is not None:
        body = body[:budget]
        budget -= len(body)
    if not options.follow or log.ended or budget == 0:
        return web.Response(body=body, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        if body:
            await response.write(body)
        while budget is None or budget > 0:
            if log.ended and cursor >= log.written:
                break
            fresh = log.since(cursor)
            cursor = log.written
            if fresh:
                chunk = _render(fresh, options.timestamps)
                if budget is not None:
                    chunk = chunk[:budget]
                    budget -= len(chunk)
                await response.write(chunk)
                continue
            await log.changed()
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    return response


def waiting_error(container: str, pod: str, reason: str) -> ApiError:
    """The kubelet's answer for a container that has not started (400 through the API)."""
    if reason == "ErrImagePull":
        text = "image can't be pulled"
    elif reason == "ImagePullBackOff":
        text = "trying and failing to pull image"
    else:
        text = reason
    return bad_request(f'container "{container}" in pod "{pod}" is waiting to start: {text}')
