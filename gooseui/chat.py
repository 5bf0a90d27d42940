"""Chat with a project's agent: sessions, history, and the reply relay (DESIGN section 6).

The relay forwards the agent's server-sent events whole and unchanged: it splits the raw
bytes on event boundaries (an event split across network reads is held until complete) and
never re-serialises them, so it adds almost nothing to the agent's own speed. It begins with
a `session` event, keeps the caller's connection alive while the agent is silent, reports a
failure after the start as an `error` event, and closes the upstream request the moment the
caller goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import anyio
import httpx

from gooseui.errors import (
    Conflict,
    GooseUIError,
    Invalid,
    NotFound,
    UpstreamFailed,
    UpstreamTimeout,
)
from gooseui.goose import GooseClient, GooseUnreachable
from gooseui.locks import ReplyLocks
from gooseui.logs import log
from gooseui.models import Project, Status
from gooseui.store import ProjectStore, now
from gooseui.textrules import message_problem

logger = logging.getLogger("gooseui.chat")

KNOWN_SESSIONS = 10_000
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"
_BOUNDARIES = (b"\n\n", b"\r\n\r\n", b"\r\r")


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def event_payload(block: bytes) -> dict[str, Any] | None:
    """The JSON of an event block's `data:` lines, or None for comments and non-JSON data."""
    data = [line[5:].removeprefix(b" ") for line in block.splitlines() if line.startswith(b"data:")]
    if not data:
        return None
    try:
        payload = json.loads(b"\n".join(data))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete event blocks at the front of `buffer`, and the incomplete rest (linear)."""
    blocks: list[bytes] = []
    boundaries = _BOUNDARIES if b"\r" in buffer else (b"\n\n",)
    start = 0
    while True:
        cut, size = -1, 0
        for boundary in boundaries:
            index = buffer.find(boundary, start)
            if index != -1 and (cut == -1 or index < cut):
                cut, size = index, len(boundary)
        if cut == -1:
            return blocks, buffer[start:]
        blocks.append(buffer[start : cut + size])
        start = cut + size


def take_complete(data: bytes) -> tuple[bytes, bytes]:
    """The complete events at the front of `data` (as one byte string) and the rest."""
    if b"\r" in data:  # CRLF or CR framing: rare, done event by event
        blocks, rest = split_events(data)
        return b"".join(blocks), rest
    cut = data.rfind(b"\n\n")
    if cut == -1:
        return b"", data
    return data[: cut + 2], data[cut + 2 :]


def _is_comment(block: bytes) -> bool:
    return all(not line or line.startswith(b":") for line in block.splitlines())


def session_unknown(payload: dict[str, Any] | None) -> bool:
    """Whether an agent's first event says it does not know the session.

    The real agent answers an unknown session with 200 and one `error` event
    ("Session not found"), not with 404.
    """
    if not payload or payload.get("type") != "error":
        return False
    content = payload.get("content") or {}
    if not isinstance(content, dict):
        return False
    error = str(content.get("error") or "")
    message = str(content.get("message") or "")
    return error == "Session not found" or (
        message.startswith("Session ") and message.endswith(" not found in MongoDB")
    )


class Reply:
    """An agent's reply in progress; iterate `events()` once, then it is closed."""

    def __init__(
        self,
        chat: ChatService,
        project: Project,
        session_id: str,
        response: httpx.Response,
        keepalive: float,
        endpoint: str = "",
        message: str = "",
        renewable: bool = False,
    ) -> None:
        self._chat = chat
        self.project = project
        self.session_id = session_id
        self._response = response
        self._keepalive = keepalive
        self._endpoint = endpoint
        self._message = message
        # the project's stored session may be replaced once if the agent forgot it
        self._renewable = renewable
        self._closed = False
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=256)
        self._reader: asyncio.Task[None] | None = None
        # what the stream has shown so far
        self._buffer = b""
        self._completed = False
        self._errored = False
        # the reply's tool calls and errors, kept for its history (the agent keeps only text)
        self._kept: list[dict[str, Any]] = []

    async def _read(
        self, response: httpx.Response, queue: asyncio.Queue[bytes | BaseException | None]
    ) -> None:
        try:
            async for chunk in response.aiter_raw():
                await queue.put(chunk)
            await queue.put(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await queue.put(exc)

    def _start_reader(self) -> None:
        self._queue = asyncio.Queue(maxsize=256)
        self._reader = asyncio.create_task(self._read(self._response, self._queue))

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def _batch(self) -> tuple[bytes, bool, BaseException | None]:
        """Whatever has arrived, at once; TimeoutError when the agent is silent too long."""
        queue = self._queue
        if queue.empty():  # `wait_for` costs a task: only when there is nothing to take
            item = await asyncio.wait_for(queue.get(), self._keepalive)
        else:
            item = queue.get_nowait()
        chunks: list[bytes] = []
        while True:
            if item is None:
                return b"".join(chunks), True, None
            if isinstance(item, BaseException):
                return b"".join(chunks), True, item
            chunks.append(item)
            if queue.empty():
                return b"".join(chunks), False, None
            item = queue.get_nowait()

    def _complete_events(self, data: bytes) -> bytes:
        """The complete events of what arrived (comments dropped), noting `complete`.

        One scan per read: an agent's closing `error` is found from the last event instead.
        """
        if self._buffer:
            data = self._buffer + data
        out, self._buffer = take_complete(data)
        if out.startswith(b":") or b"\n:" in out:  # drop the agent's keep-alives
            out = b"".join(b for b in split_events(out)[0] if not _is_comment(b))
        if b'"tool_re' in out or b'"error"' in out:  # parsed only when there is one
            self._keep(out)
        if out and not self._completed and b"complete" in out:
            self._note_kinds(out)
        return out

    def _keep(self, out: bytes) -> None:
        for block in split_events(out)[0]:
            payload = event_payload(block)
            if payload is not None and payload.get("type") in KEPT and len(self._kept) < 200:
                self._kept.append(kept_event(payload))

    def _note_kinds(self, out: bytes) -> None:
        """Whether the relayed events hold the agent's `complete` or an `error`."""
        for block in split_events(out)[0]:
            kind = (event_payload(block) or {}).get("type")
            self._completed = self._completed or kind == "complete"
            self._errored = self._errored or kind == "error"

    async def _opening(self) -> AsyncIterator[bytes | tuple[bytes, bool, BaseException | None]]:
        """Keep-alives until the agent's first event, then that batch (as a tuple).

        The `session` event waits for it: when the agent does not know the stored session,
        the message goes again in a new one, and the caller sees only the new session.
        """
        pending = b""
        while True:
            try:
                data, ended, failure = await self._batch()
            except TimeoutError:
                yield KEEPALIVE
                continue
            pending += data
            blocks = [b for b in split_events(pending)[0] if not _is_comment(b)]
            if not blocks and not ended:
                continue
            if blocks and session_unknown(event_payload(blocks[0])):
                self._chat._forget(self.session_id)
                if self._renewable:
                    self._renewable = False
                    await self._renew()
                    pending = b""
                    continue
            yield (pending, ended, failure)
            return

    async def _renew(self) -> None:
        """A new session for the project, and the message sent again in it (once)."""
        old = self.session_id
        await self._stop_reader()
        await self._response.aclose()
        await self._chat._release(old)
        self.session_id, self._response = await self._chat._reopen(
            self.project, self._endpoint, self._message
        )
        log(
            logger,
            "chat.session_renewed",
            user_id=self.project.user_id,
            project_id=self.project.project_id,
            old_session_id=old,
            session_id=self.session_id,
        )
        self._start_reader()

    async def events(self) -> AsyncIterator[bytes]:
        """SSE bytes for the caller: `session`, the agent's events, keep-alives, errors.

        Whatever has arrived is relayed in one write (fewer writes when the agent is fast);
        an event is never cut, and never re-encoded.
        """
        failure: tuple[str, str] | None = None
        ended = False
        last = b""  # the last events relayed
        self._start_reader()
        try:
            first = b""
            error: BaseException | None = None
            try:
                async for item in self._opening():
                    if isinstance(item, bytes):
                        yield item
                    else:
                        first, ended, error = item
            except GooseUIError as exc:  # the renewal failed: say so in the stream
                yield sse({"type": "session", "content": {"session_id": self.session_id}})
                failure = (exc.code, exc.detail)
                ended = True
            else:
                if error is not None:
                    failure = _stream_failure(error)
                # the session and the agent's first events in one write
                session = sse({"type": "session", "content": {"session_id": self.session_id}})
                last = self._complete_events(first)
                yield session + last
            noted = time.monotonic()
            while not ended:
                if time.monotonic() - noted > self._chat.activity_every:
                    noted = time.monotonic()
                    self._chat._still_going(self.project)
                try:
                    data, ended, error = await self._batch()
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if error is not None:
                    failure = _stream_failure(error)
                out = self._complete_events(data)
                if out:
                    last = out
                    yield out
            if not self._completed and last:
                # an agent that reports its failure ends with that `error` (no `complete`)
                self._note_kinds(split_events(last)[0][-1])
            if failure is None and not self._completed and not self._errored:
                failure = (
                    "StreamInterrupted",
                    "The agent's reply ended before it was complete; the agent may "
                    "have stopped or restarted.",
                )
            if failure is not None:
                log(
                    logger,
                    "chat.stream_failed",
                    logging.WARNING,
                    code=failure[0],
                    user_id=self.project.user_id,
                    project_id=self.project.project_id,
                )
                error_event = {
                    "type": "error",
                    "content": {"message": failure[1], "code": failure[0]},
                }
                self._kept.append(error_event)
                yield sse(error_event)
        finally:
            with anyio.CancelScope(shield=True):  # a caller's disconnect cancels us; finish
                await self._stop_reader()
                await self.aclose()
            # every reply, with or without events: turns are matched to the history's
            # messages in order, so one missing would shift the others onto the wrong message
            self._chat._keep_turn(self.project, self.session_id, self._message, self._kept)

    async def aclose(self) -> None:
        """Close the upstream request (the agent stops) and free the session."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._response.aclose()
        finally:
            self._chat._ended(self.project)
            await self._chat._release(self.session_id)


def _stream_failure(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, httpx.ReadTimeout):
        return ("Timeout", "The agent sent nothing for too long; the reply was stopped.")
    if isinstance(exc, httpx.HTTPError):
        return (
            "StreamInterrupted",
            f"The connection to the agent broke: {exc or type(exc).__name__}",
        )
    return ("StreamInterrupted", f"The reply failed: {exc}")


KEPT = {"tool_request", "tool_response", "error"}
MAX_KEPT_RESULT = 8192  # characters of a tool's result kept for the history


def kept_event(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of a tool call or error worth showing again after a reload, bounded."""
    content = payload.get("content") or {}
    kind = payload.get("type")
    if kind == "tool_request":
        kept = {k: content.get(k) for k in ("id", "tool_name", "arguments")}
    elif kind == "tool_response":
        kept = {k: content.get(k) for k in ("id", "is_error", "result")}
    else:
        kept = {k: content[k] for k in ("message", "error", "code") if k in content}
    for key, value in kept.items():
        text = json.dumps(value, default=str)
        if len(text) > MAX_KEPT_RESULT:
            kept[key] = {"truncated": text[:MAX_KEPT_RESULT]}
    return {"type": kind, "content": kept}


def attach_turns(messages: list[dict[str, Any]], turns: list[dict[str, Any]]) -> None:
    """Give each user message the kept events of the reply it prompted (`events`).

    Turns are matched in order by the message's text: the agent's history has no ids, and a
    turn whose message is gone (the agent compacted its history) is skipped.
    """
    position = 0
    for message in messages:
        if str(message.get("role", "")).lower() != "user":
            continue
        text = str(message.get("content", ""))
        for index in range(position, len(turns)):
            if turns[index].get("message") == text:
                message["events"] = turns[index].get("events") or []
                position = index + 1
                break


class ChatService:
    """Sessions and replies of active projects."""

    def __init__(
        self,
        store: ProjectStore,
        goose: GooseClient,
        keepalive: float = KEEPALIVE_SECONDS,
        locks: ReplyLocks | None = None,
        activity_every: float = 60.0,
    ) -> None:
        self.store = store
        self.goose = goose
        self.keepalive = keepalive
        # how often a long reply notes its project's activity (for the idle stop)
        self.activity_every = activity_every
        # replies of this replica; `locks` holds them against the other replicas too
        self._running: set[str] = set()
        self.locks = locks
        # sessions this console made or saw a reply in: an explicit one of these needs no
        # look-up before its message (a forgotten one still answers with the agent's error)
        self._known: OrderedDict[str, None] = OrderedDict()
        self._saving: set[asyncio.Task[None]] = set()
        # replies open through this replica, per project (the idle stop never stops those)
        self._replying: dict[tuple[str, str], int] = {}

    def replying(self, user_id: str, project_id: str) -> bool:
        return self._replying.get((user_id, project_id), 0) > 0

    def _started(self, project: Project) -> None:
        key = (project.user_id, project.project_id)
        self._replying[key] = self._replying.get(key, 0) + 1

    def _still_going(self, project: Project) -> None:
        """A long reply: its project is in use (the agent's own status forgets a reply
        after 5 min, so another replica's idle sweep cannot see it there)."""
        self._in_background(self.store.touch(project.user_id, project.project_id))

    def _ended(self, project: Project) -> None:
        key = (project.user_id, project.project_id)
        left = self._replying.get(key, 0) - 1
        if left > 0:
            self._replying[key] = left
        else:
            self._replying.pop(key, None)
        self._in_background(self.store.touch(*key))  # the idle clock starts at the reply's end

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """A write the reply does not wait for; its failure is logged, not raised."""

        async def run() -> None:
            try:
                await work
            except GooseUIError as exc:
                log(logger, "chat.write_failed", logging.WARNING, error=exc.detail)

        task = asyncio.create_task(run())
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    def _keep_turn(
        self, project: Project, session_id: str, message: str, events: list[dict[str, Any]]
    ) -> None:
        """Store a reply's tool calls and errors, after the reply (it is not held up)."""
        doc = {
            "user_id": project.user_id,
            "project_id": project.project_id,
            "session_id": session_id,
            "message": message,
            "events": events,
            "at": now(),
        }

        self._in_background(self.store.add_turn(doc))  # a failure loses only the reload's tools

    def _forget(self, session_id: str) -> None:
        self._known.pop(session_id, None)

    def _remember(self, session_id: str) -> None:
        self._known[session_id] = None
        self._known.move_to_end(session_id)
        while len(self._known) > KNOWN_SESSIONS:
            self._known.popitem(last=False)

    async def _claim(self, session_id: str) -> bool:
        if session_id in self._running:
            return False
        if self.locks is not None and not await self.locks.claim(session_id):
            return False
        self._running.add(session_id)
        return True

    async def _release(self, session_id: str) -> None:
        if session_id not in self._running:
            return
        self._running.discard(session_id)
        if self.locks is not None:
            await self.locks.release(session_id)

    @staticmethod
    def _endpoint(project: Project) -> str:
        if project.status != Status.ACTIVE or not project.endpoint:
            raise Conflict(
                f"Project {project.name!r} is {project.status}; activate it to chat.",
                code="NotActive",
            )
        return project.endpoint

    @staticmethod
    def check_message(message: str) -> None:
        if not isinstance(message, str):
            raise Invalid("The message must be text.", code="InvalidMessage")
        if problem := message_problem(message):
            raise Invalid(problem[1], code=problem[0])

    async def _new_session(self, project: Project, endpoint: str) -> str:
        try:
            session_id = await self.goose.create_session(endpoint)
        except GooseUnreachable as exc:
            raise _unreachable(exc) from None
        await self.store.set_session(project.user_id, project.project_id, session_id)
        self._remember(session_id)
        log(
            logger,
            "chat.session_created",
            user_id=project.user_id,
            project_id=project.project_id,
            session_id=session_id,
        )
        return session_id

    async def new_session(self, project: Project) -> str:
        """Start a new conversation; it becomes the project's current one."""
        return await self._new_session(project, self._endpoint(project))

    async def history(self, project: Project) -> dict[str, Any]:
        """The current session's messages (empty when there is none yet)."""
        endpoint = self._endpoint(project)
        empty = {"session_id": project.goose_session_id, "messages": [], "total_count": 0}
        if not project.goose_session_id:
            return empty
        try:
            history = await self.goose.history(endpoint, project.goose_session_id)
        except GooseUnreachable as exc:
            raise _unreachable(exc) from None
        if history is None:
            return {**empty, "session_id": None}
        messages = history.get("messages")
        if isinstance(messages, list) and messages:
            turns = await self.store.turns(
                project.user_id, project.project_id, project.goose_session_id
            )
            attach_turns(messages, turns)
        return history

    async def send(self, project: Project, message: str, session_id: str | None = None) -> Reply:
        """Check, then open the agent's reply; errors before the stream are raised here.

        The project's stored session is renewed when the agent no longer knows it; a session
        the caller names explicitly must exist (404 `SessionNotFound` otherwise).
        """
        self.check_message(message)
        endpoint = self._endpoint(project)
        explicit = session_id is not None and session_id != project.goose_session_id
        if explicit and session_id not in self._known:
            assert session_id is not None
            try:
                known = await self.goose.session_exists(endpoint, session_id)
            except GooseUnreachable as exc:
                raise _unreachable(exc) from None
            if not known:
                raise NotFound(
                    f"The agent of project {project.name!r} has no conversation {session_id}.",
                    code="SessionNotFound",
                )
            self._remember(session_id)
        session_id = session_id or project.goose_session_id
        if session_id is None:
            session_id = await self._new_session(project, endpoint)
        # the message is activity, written before the agent gets it: an idle sweep (on any
        # replica) that read the project before this cannot stop it now
        if not await self.store.touch(project.user_id, project.project_id, active_only=True):
            raise Conflict(
                f"Project {project.name!r} is no longer active; activate it to chat.",
                code="NotActive",
            )
        session_id, response = await self._open(project, endpoint, session_id, message)
        self._started(project)
        return Reply(
            self,
            project,
            session_id,
            response,
            self.keepalive,
            endpoint=endpoint,
            message=message,
            renewable=not explicit,
        )

    async def _reopen(
        self, project: Project, endpoint: str, message: str
    ) -> tuple[str, httpx.Response]:
        """A new session, stored, with the message sent in it."""
        session_id = await self._new_session(project, endpoint)
        return await self._open(project, endpoint, session_id, message, renew=False)

    async def _open(
        self, project: Project, endpoint: str, session_id: str, message: str, renew: bool = True
    ) -> tuple[str, httpx.Response]:
        """The open 200 reply stream for a message, holding the session's one-reply guard."""
        for attempt in range(2):
            if not await self._claim(session_id):
                raise Conflict(
                    "A reply is already running in this conversation; wait for it or stop it.",
                    code="ReplyRunning",
                )
            try:
                response = await self.goose.open_reply(endpoint, session_id, message)
            except GooseUnreachable as exc:
                await self._release(session_id)
                raise _unreachable(exc) from None
            except BaseException:
                await self._release(session_id)
                raise
            if response.status_code == 200:
                return session_id, response
            await response.aclose()
            await self._release(session_id)
            if response.status_code == 404 and attempt == 0 and renew:
                # an agent that answers 404 for a session it forgot: start a new one
                session_id = await self._new_session(project, endpoint)
                continue
            if response.status_code == 409:
                raise Conflict(
                    "The agent is already replying in this conversation.", code="ReplyRunning"
                )
            if response.status_code in (502, 503, 504):
                raise UpstreamFailed(
                    f"The agent's pod cannot be reached ({response.status_code}); it may have "
                    "stopped. Deactivate and activate the project again.",
                    code="AgentUnreachable",
                )
            raise UpstreamFailed(
                f"The agent refused the message ({response.status_code}).", code="AgentError"
            )
        raise UpstreamFailed("The agent did not accept the message.", code="AgentError")


def _unreachable(exc: GooseUnreachable) -> UpstreamFailed | UpstreamTimeout:
    if exc.timeout:
        return UpstreamTimeout(exc.message, code="Timeout")
    return UpstreamFailed(exc.message, code="AgentUnreachable")
