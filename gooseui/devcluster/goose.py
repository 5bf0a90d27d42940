"""The simulated Goose API that every Ready pod serves (DESIGN section 6).

A deterministic agent: it streams its reply as Server-Sent Events in small deltas
(`data: <json>` + blank line, comment keep-alives, no `event:`/`id:` lines), emits a
tool_request/tool_response pair when the message mentions a tool, and ends with
`complete`. Sessions and history live in a `SessionStore` per project, outside the
pod, so they survive pod restarts the way the real agent's MongoDB does. Stream
starts and client disconnects are recorded in an `AgentLog` for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .faults import Faults, StreamBehaviour
from .process import Launch
from .settings import AgentSettings

log = logging.getLogger(__name__)

Project = tuple[str, str]  # (namespace, deployment)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class Session:
    session_id: str
    created_at: float
    updated_at: float
    messages: list[dict[str, Any]] = field(default_factory=list)
    busy: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "message_count": len(self.messages),
        }

    def add(self, role: str, content: str) -> None:
        now = time.time()
        self.messages.append(
            {
                "role": role,
                "content": content,
                "timestamp": int(now),
                "message_index": len(self.messages),
            }
        )
        self.updated_at = now


class SessionStore:
    """Sessions per project; shared by all pods of a project across restarts."""

    def __init__(self) -> None:
        self._projects: dict[Project, dict[str, Session]] = {}

    def create(self, project: Project) -> Session:
        now = time.time()
        session = Session(str(uuid.uuid4()), now, now)
        self._projects.setdefault(project, {})[session.session_id] = session
        return session

    def get(self, project: Project, session_id: str) -> Session | None:
        return self._projects.get(project, {}).get(session_id)

    def delete(self, project: Project, session_id: str) -> bool:
        return self._projects.get(project, {}).pop(session_id, None) is not None

    def forget_project(self, project: Project) -> None:
        self._projects.pop(project, None)


@dataclass(frozen=True)
class StreamRecord:
    """What happened to one reply stream (for tests and diagnostics)."""

    kind: str  # "started" | "completed" | "client_disconnected" | "died"
    namespace: str
    deployment: str
    pod: str
    session_id: str
    events_sent: int
    at: float  # time.monotonic()


class AgentLog:
    """Records of reply streams, with a waiter for tests."""

    def __init__(self) -> None:
        self.records: list[StreamRecord] = []
        self._changed = asyncio.Event()

    def add(self, record: StreamRecord) -> None:
        self.records.append(record)
        self._changed.set()
        self._changed = asyncio.Event()

    def of_kind(self, kind: str) -> list[StreamRecord]:
        return [r for r in self.records if r.kind == kind]

    async def wait_for(self, kind: str, start: int = 0, within: float = 5.0) -> StreamRecord | None:
        """The first record of `kind` at index >= `start`, waiting up to `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for record in self.records[start:]:
                if record.kind == kind:
                    return record
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)


def reply_events(
    message: str, session_id: str, env: dict[str, str], settings: AgentSettings
) -> Iterator[tuple[dict[str, Any], float]]:
    """The agent's deterministic reply: (payload, pause before it) pairs, `complete` last."""
    now = int(time.time())

    def delta(text: str) -> dict[str, Any]:
        return {
            "type": "message",
            "content": {
                "role": "assistant",
                "content": text,
                "content_type": "text",
                "timestamp": now,
                "session_id": session_id,
            },
        }

    if settings.reply_deltas is not None:
        words = [f"w{i} " for i in range(settings.reply_deltas)]
    else:
        quoted = message.strip().replace("\n", " ")
        if len(quoted) > 80:
            quoted = quoted[:77] + "..."
        text = (
            f"Hello from the simulated Goose agent of project {env.get('PROJECT_ID', '?')} "
            f'(user {env.get("USER_ID", "?")}). You wrote: "{quoted}". '
            "This answer is streamed in small pieces so that you can watch it arrive."
        )
        words = [w + " " for w in text.split(" ")]
        words[-1] = words[-1].rstrip()
    wants_tool = "tool" in message.lower()
    wants_error = "simulate-error" in message.lower()
    if "simulate-unknown" in message.lower():
        # event types a client does not know yet must pass through a relay untouched
        yield ({"type": "thinking", "content": {"thinking": "considering the request"}}, 0.0)
        yield ({"type": "x_future_event", "content": {"note": "clients must ignore this"}}, 0.0)
    tool_at = min(3, len(words))
    for index, word in enumerate(words):
        if wants_tool and index == tool_at:
            call_id = f"call_{session_id[:8]}_{index}"
            yield (
                {
                    "type": "tool_request",
                    "content": {
                        "id": call_id,
                        "tool_name": "developer__shell",
                        "arguments": {"command": "echo simulated tool"},
                    },
                },
                settings.delta_delay,
            )
            yield (
                {
                    "type": "tool_response",
                    "content": {
                        "id": call_id,
                        "result": [{"type": "text", "text": "simulated tool\n"}],
                        "is_error": False,
                    },
                },
                settings.tool_delay,
            )
        if wants_error and index == len(words) // 2:
            yield (
                {
                    "type": "error",
                    "content": {"message": "simulated provider failure", "error": "ProviderError"},
                },
                settings.delta_delay,
            )
            break
        yield (delta(word), settings.delta_delay if index else 0.0)
    yield (
        {"type": "complete", "content": {"message": "Reply complete", "session_id": session_id}},
        0.0,
    )


def _encode(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class _SseWriter:
    """Writes events and keep-alives to one response without interleaving them."""

    def __init__(self, response: web.StreamResponse, behaviour: StreamBehaviour) -> None:
        self.response = response
        self.behaviour = behaviour
        self.lock = asyncio.Lock()

    async def send(self, data: bytes) -> None:
        async with self.lock:
            size = self.behaviour.split_chunk_size
            if not size:
                await self.response.write(data)
                return
            for start in range(0, len(data), size):
                await self.response.write(data[start : start + size])
                if start + size < len(data):
                    await asyncio.sleep(self.behaviour.split_pause)

    async def keepalive(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            async with self.lock:
                try:
                    await self.response.write(b": ping\n\n")
                except ConnectionResetError:
                    return  # the reply's own writes notice and record the disconnect


class AgentDatabases:
    """The agents' databases, one client per `MONGODB_URL`, shared by every simulated pod.

    (Transitional: sessions are still kept in memory here.)
    """

    def __init__(self) -> None:
        self.sessions = SessionStore()

    async def close(self) -> None:
        return None


class GooseServer:
    """One pod's Goose API on its own loopback port."""

    def __init__(
        self,
        launch: Launch,
        databases: AgentDatabases,
        settings: Callable[[], AgentSettings],
        faults: Faults,
        agent_log: AgentLog,
        healthy: bool = True,
    ) -> None:
        self.launch = launch
        self.pod = launch.pod
        self.project = launch.project
        self.env = launch.env
        self.sessions = databases.sessions
        on_log = launch.on_log
        self.settings = settings
        self.faults = faults
        self.agent_log = agent_log
        self.healthy = healthy
        self.on_log = on_log or (lambda _line: None)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def start(self, host: str = "127.0.0.1") -> int:
        app = web.Application(middlewares=[self._access_log])
        app.router.add_get("/api/v1/health", self._health)
        app.router.add_post("/api/v1/sessions", self._create_session)
        app.router.add_get("/api/v1/sessions/{sid}", self._get_session)
        app.router.add_delete("/api/v1/sessions/{sid}", self._delete_session)
        app.router.add_get("/api/v1/sessions/{sid}/messages", self._history)
        app.router.add_post("/api/v1/sessions/{sid}/messages", self._reply)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.2
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.on_log(f"goose api-server listening on :{self.port} (simulated)")
        return self.port

    async def stop(self) -> None:
        """Stop serving; open reply streams are cut as when the container exits."""
        self._stopping = True
        for task in list(self._streams):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _access_log(
        self, request: web.Request, handler: Callable[..., Any]
    ) -> web.StreamResponse:
        response = await handler(request)
        self.on_log(f"{request.method} {request.path} {response.status}")
        return response

    def _json(self, body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status)

    async def _health(self, request: web.Request) -> web.Response:
        if not self.healthy:
            return self._json({"status": "unhealthy", "reason": "agent not ready"}, 503)
        return self._json(
            {
                "status": "ok",
                "version": "simulated",
                "user_id": self.env.get("USER_ID"),
                "project_id": self.env.get("PROJECT_ID"),
                "pod": self.pod,
            }
        )

    async def _create_session(self, request: web.Request) -> web.Response:
        session = self.sessions.create(self.project)
        return self._json({"session_id": session.session_id}, 201)

    def _session(self, request: web.Request) -> Session:
        sid = request.match_info["sid"]
        session = self.sessions.get(self.project, sid)
        if session is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "session not found", "session_id": sid}),
                content_type="application/json",
            )
        return session

    async def _get_session(self, request: web.Request) -> web.Response:
        return self._json(self._session(request).describe())

    async def _delete_session(self, request: web.Request) -> web.Response:
        session = self._session(request)
        self.sessions.delete(self.project, session.session_id)
        return web.Response(status=204)

    async def _history(self, request: web.Request) -> web.Response:
        session = self._session(request)
        return self._json(
            {
                "session_id": session.session_id,
                "messages": list(session.messages),
                "total_count": len(session.messages),
            }
        )

    def _record(self, kind: str, session_id: str, sent: int) -> None:
        self.agent_log.add(
            StreamRecord(
                kind, self.project[0], self.project[1], self.pod, session_id, sent, time.monotonic()
            )
        )

    async def _reply(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return self._json({"error": "invalid JSON body"}, 400)
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            return self._json({"error": "message must be a non-empty string"}, 400)
        if session.busy:
            return self._json(
                {
                    "error": "a reply is already running for this session",
                    "session_id": session.session_id,
                },
                409,
            )
        session.busy = True
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            return await self._stream(request, session, message)
        finally:
            session.busy = False
            if task is not None:
                self._streams.discard(task)

    async def _stream(
        self, request: web.Request, session: Session, message: str
    ) -> web.StreamResponse:
        settings = self.settings()
        behaviour = self.faults.stream_behaviour(*self.project)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        session.add("User", message)
        writer = _SseWriter(response, behaviour)
        pinger = asyncio.create_task(writer.keepalive(settings.keepalive))
        sent = 0
        text: list[str] = []
        self._record("started", session.session_id, 0)
        try:
            for payload, pause in reply_events(message, session.session_id, self.env, settings):
                if pause:
                    await asyncio.sleep(pause)
                if behaviour.die_after_events is not None and sent >= behaviour.die_after_events:
                    # the agent process dies: the connection drops without a final chunk
                    self._record("died", session.session_id, sent)
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                await writer.send(_encode(payload))
                sent += 1
                if payload["type"] == "message":
                    text.append(payload["content"]["content"])
            session.add("Assistant", "".join(text))
            self._record("completed", session.session_id, sent)
            await response.write_eof()
        except asyncio.CancelledError:
            kind = "server_stopped" if self._stopping else "client_disconnected"
            self._record(kind, session.session_id, sent)
            raise
        except ConnectionResetError:  # the client went away between two writes
            self._record("client_disconnected", session.session_id, sent)
            return response
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        return response
