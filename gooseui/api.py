"""The REST face (DESIGN section 4b): thin routes over the service layer.

Every error leaves as `{"detail": "...", "code": "..."}` with the status DESIGN fixes,
including FastAPI's own request validation errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from gooseui.chat import Reply
from gooseui.diagnostics import Diagnostics, LogFollow
from gooseui.errors import GooseUIError, NotFound, Unavailable
from gooseui.events import ProjectEvent
from gooseui.logs import log
from gooseui.models import (
    ChatEvent,
    MessageIn,
    NameIn,
    ProgressEvent,
    Project,
    ProjectIn,
    ProjectPatch,
    SessionOut,
    User,
)
from gooseui.service import ProjectService, WakeReply

logger = logging.getLogger("gooseui.api")

KEEPALIVE_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ErrorBody(BaseModel):
    detail: str
    code: str


def _service(request: Request) -> ProjectService:
    return request.app.state.runtime.service


Service = Annotated[ProjectService, Depends(_service)]


def _diagnostics(request: Request) -> Diagnostics:
    diagnostics = request.app.state.runtime.diagnostics
    if diagnostics is None:
        raise Unavailable("The console is still starting.", code="Starting")
    return diagnostics


DiagnosticsDep = Annotated[Diagnostics, Depends(_diagnostics)]
MAX_TAIL = 5000


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


_EVENT_MODELS: list[type[BaseModel]] = []


def _event_stream(model: type[BaseModel], description: str) -> dict[str, Any]:
    """A 200 of server-sent events whose `data:` lines are each one JSON `model`.

    OpenAPI 3.1 has no word for a stream's items, so `schema` describes one event as the
    OpenAPI 3.2 convention (and Schemathesis) read it: `{"data": str, "event"?, "id"?}`,
    with `data`'s JSON named by `contentSchema`.
    """
    _EVENT_MODELS.append(model)
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"#/components/schemas/{model.__name__}"},
            },
            "event": {"type": "string", "const": "message"},
        },
    }
    return {"description": description, "content": {"text/event-stream": {"schema": event}}}


router = APIRouter()


@router.get("/users", response_model=list[User], tags=["users"])
async def list_users(service: Service) -> list[User]:
    return service.list_users()


@router.get(
    "/users/{user_id}/projects",
    response_model=list[Project],
    tags=["projects"],
    responses=_errors(404),
)
async def list_projects(user_id: str, service: Service) -> list[Project]:
    """The user's projects, newest first."""
    return await service.list_projects(user_id)


@router.post(
    "/users/{user_id}/projects",
    response_model=Project,
    status_code=201,
    tags=["projects"],
    responses=_errors(404, 409, 422),
)
async def create_project(user_id: str, body: ProjectIn, service: Service) -> Project:
    """Create an inactive project; nothing is created in the cluster yet."""
    return await service.create_project(user_id, body.name, model=body.model)


@router.get(
    "/users/{user_id}/projects/{project_id}",
    response_model=Project,
    tags=["projects"],
    responses=_errors(404),
)
async def get_project(user_id: str, project_id: str, service: Service) -> Project:
    return await service.get_project(user_id, project_id)


@router.put(
    "/users/{user_id}/projects/{project_id}",
    response_model=Project,
    tags=["projects"],
    responses=_errors(404, 409, 422),
)
async def rename_project(user_id: str, project_id: str, body: NameIn, service: Service) -> Project:
    return await service.rename_project(user_id, project_id, body.name)


@router.patch(
    "/users/{user_id}/projects/{project_id}",
    response_model=Project,
    tags=["projects"],
    responses=_errors(404, 409, 422),
)
async def update_project(
    user_id: str, project_id: str, body: ProjectPatch, service: Service
) -> Project:
    """Change the fields given: `name` (as PUT), `keep_running` (never stopped when idle),
    `model` (the agent's, from the next activation; null: the agent environment's)."""
    changes = {"model": body.model} if "model" in body.model_fields_set else {}
    return await service.update_project(
        user_id, project_id, name=body.name, keep_running=body.keep_running, **changes
    )


@router.delete(
    "/users/{user_id}/projects/{project_id}",
    status_code=204,
    tags=["projects"],
    responses=_errors(404, 409, 502, 503),
)
async def delete_project(user_id: str, project_id: str, service: Service) -> Response:
    await service.delete_project(user_id, project_id)
    return Response(status_code=204)


@router.post(
    "/users/{user_id}/projects/{project_id}/activate",
    response_model=Project,
    tags=["lifecycle"],
    responses={202: {"model": Project}, **_errors(404, 409, 502, 503, 504)},
)
async def activate(
    user_id: str, project_id: str, service: Service, wait: bool = True
) -> JSONResponse:
    """Start the environment; answers when it is active, or at once (202) with `wait=false`.

    409 `InTransition` while another transition runs; 409 `Cancelled` when the activation
    waited on is cancelled by a deactivation."""
    project = await service.activate(user_id, project_id, wait=wait)
    status = 200 if wait or project.status == "active" else 202
    return JSONResponse(project.model_dump(mode="json"), status_code=status)


@router.post(
    "/users/{user_id}/projects/{project_id}/deactivate",
    response_model=Project,
    tags=["lifecycle"],
    responses=_errors(404, 409, 502, 503, 504),
)
async def deactivate(user_id: str, project_id: str, service: Service) -> Project:
    """Scale to 0 and wait until the pod is gone; an `activating` project's activation is
    cancelled (a caller waiting on that activation gets 409 `Cancelled`)."""
    return await service.deactivate(user_id, project_id)


@router.get(
    "/users/{user_id}/projects/{project_id}/events",
    tags=["lifecycle"],
    responses={
        200: _event_stream(
            ProgressEvent,
            "The current status first (`step` = `current`), then every change; "
            "`: keep-alive` comments every 15 s. Ends after `deleted`.",
        ),
        **_errors(404),
    },
)
async def events(
    user_id: str, project_id: str, request: Request, service: Service
) -> StreamingResponse:
    """Server-sent events: the current status first, then every progress and status change."""
    await service.get_project(user_id, project_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[bytes]:
        try:
            async with service.progress(user_id, project_id, KEEPALIVE_SECONDS) as events:
                async for event in events:
                    yield b": keep-alive\n\n" if event is None else _sse(event)
        except NotFound:
            return  # deleted between the check and the subscription: nothing more to tell
        except GooseUIError as exc:  # MongoDB went away mid-stream: end it, the caller retries
            log(logger, "events.stream_ended", logging.WARNING, error=exc.detail)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: ProjectEvent) -> bytes:
    return b"data: " + json.dumps(event.to_json()).encode() + b"\n\n"


@router.post(
    "/users/{user_id}/projects/{project_id}/messages",
    tags=["chat"],
    responses={
        200: _event_stream(
            ChatEvent,
            "`session` first, then the agent's events whole and unchanged, ending with "
            "`complete` (or `error`); `: keep-alive` comments while the agent is silent.",
        ),
        **_errors(404, 409, 422, 502, 504),
    },
)
async def send_message(
    user_id: str, project_id: str, body: MessageIn, service: Service
) -> StreamingResponse:
    """The agent's reply as server-sent events: `session` first, then the agent's events."""
    reply = await service.send_message(
        user_id, project_id, body.message, body.session_id, activate=body.activate
    )
    return ReplyResponse(reply)


class ReplyResponse(StreamingResponse):
    """A reply stream that is closed however the response ends.

    A caller that disconnects before the first byte cancels the body before it starts, and
    Starlette never closes an unstarted generator: without this the upstream request and the
    session's lock would outlive the caller.
    """

    def __init__(self, reply: Reply | WakeReply) -> None:
        super().__init__(reply.events(), media_type="text/event-stream", headers=SSE_HEADERS)
        self.reply = reply

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.reply.aclose()


@router.get(
    "/users/{user_id}/projects/{project_id}/messages",
    tags=["chat"],
    responses=_errors(404, 409, 502, 504),
)
async def history(user_id: str, project_id: str, service: Service) -> dict[str, Any]:
    """The current conversation's messages."""
    return await service.history(user_id, project_id)


@router.post(
    "/users/{user_id}/projects/{project_id}/sessions",
    status_code=201,
    response_model=SessionOut,
    tags=["chat"],
    responses=_errors(404, 409, 502, 504),
)
async def new_session(user_id: str, project_id: str, service: Service) -> SessionOut:
    """Start a new conversation; it becomes the project's current one."""
    return SessionOut(session_id=await service.new_session(user_id, project_id))


class LogsOut(BaseModel):
    """Lines of the agent container's log, secrets masked as `••••`."""

    pod: str | None
    previous: bool
    restarts: int
    lines: list[str]


class LogLine(BaseModel):
    """One line of a followed log (`data:` of one server-sent event), secrets masked."""

    line: str


class ClusterEventOut(BaseModel):
    """One Kubernetes Event about one of the project's objects, its message redacted."""

    at: datetime | None
    type: str
    reason: str
    object: str
    message: str
    count: int


_DIAGNOSTICS_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such user or project."},
    502: {
        "model": ErrorBody,
        "description": "The API server refused (`Forbidden`: the console's RBAC lacks "
        "`get` on pods/log or `list` on pods/events; `ClusterError`).",
    },
    503: {
        "model": ErrorBody,
        "description": "No cluster is configured or it does not answer "
        "(`ClusterUnavailable`), or MongoDB does not answer.",
    },
}


@router.get(
    "/users/{user_id}/projects/{project_id}/logs",
    tags=["diagnostics"],
    response_model=LogsOut,
    responses={
        200: {
            "description": "The last `tail` lines as JSON; with `follow=true` a stream of "
            'server-sent events, one `{"line"}` per line as the container writes it '
            "(`: keep-alive` comments every 15 s), ending when the container does (with "
            "`previous`: the previous container's lines, then the end).",
            "content": _event_stream(LogLine, "")["content"],
        },
        409: {
            "model": ErrorBody,
            "description": "`NoPod` (the project runs no pod), `NoPreviousContainer` "
            "(`previous` of a container that never restarted), `ContainerNotStarted` (its "
            "image is not pulled yet, say: the cluster events tell why), `LogUnavailable`.",
        },
        422: {
            "model": ErrorBody,
            "description": f"`tail` is not 1 to {MAX_TAIL}.",
        },
        **_DIAGNOSTICS_ERRORS,
    },
)
async def logs(
    user_id: str,
    project_id: str,
    service: Service,
    diagnostics: DiagnosticsDep,
    tail: Annotated[int, Query(ge=1, le=MAX_TAIL, description="lines from the end")] = 200,
    previous: Annotated[bool, Query(description="the container before its last restart")] = False,
    follow: Annotated[bool, Query(description="stream new lines (server-sent events)")] = False,
    timestamps: Annotated[bool, Query(description="prefix the kubelet's RFC 3339 time")] = False,
) -> Response:
    """The agent container's log (the project's newest pod), secrets masked as `••••`."""
    project = await service.get_project(user_id, project_id)
    if follow:
        # with `previous` too, the stream is the previous container's lines, then its end
        stream = diagnostics.follow(project, tail=tail, timestamps=timestamps, previous=previous)
        try:
            await stream.start()  # no pod, a container not started: an error, not a stream
        except BaseException:
            await stream.aclose()
            raise
        return LogStreamResponse(stream)
    lines = await diagnostics.logs(project, tail=tail, previous=previous, timestamps=timestamps)
    out = LogsOut(
        pod=lines.pod, previous=lines.previous, restarts=lines.restarts, lines=lines.lines
    )
    return JSONResponse(out.model_dump(mode="json"))


class LogStreamResponse(StreamingResponse):
    """A followed log as server-sent events, whose upstream stream is closed however the
    response ends (the caller went away before the first byte, or during the stream)."""

    def __init__(self, stream: LogFollow) -> None:
        super().__init__(_log_events(stream), media_type="text/event-stream", headers=SSE_HEADERS)
        self.stream = stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()


async def _log_events(stream: LogFollow) -> AsyncIterator[bytes]:
    """One `data: {"line"}` event per line; a keep-alive comment after 15 s of silence (a
    read that outlasts it keeps going: cancelling it would close the stream)."""
    pending: asyncio.Task[str] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(stream.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield b": keep-alive\n\n"
                continue
            task, pending = pending, None
            try:
                line = task.result()
            except StopAsyncIteration:
                return
            yield b"data: " + json.dumps({"line": line}, ensure_ascii=False).encode() + b"\n\n"
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await stream.aclose()


@router.get(
    "/users/{user_id}/projects/{project_id}/cluster-events",
    tags=["diagnostics"],
    response_model=list[ClusterEventOut],
    responses=_DIAGNOSTICS_ERRORS,
)
async def cluster_events(
    user_id: str,
    project_id: str,
    service: Service,
    diagnostics: DiagnosticsDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="the latest this many")] = 100,
) -> list[ClusterEventOut]:
    """The Kubernetes events of the project's Deployment, ReplicaSets, pods (gone ones
    too), Service and route, oldest first, messages redacted."""
    project = await service.get_project(user_id, project_id)
    events = await diagnostics.cluster_events(project, limit=limit)
    return [ClusterEventOut(**event.__dict__) for event in events]


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process serves requests."""
    return {"status": "ok"}


@router.get("/debug/loop-lag", tags=["health"])
async def loop_lag(request: Request, reset: bool = False) -> dict[str, Any]:
    """How late the event loop has run (p50/p99/max since start or the last reset)."""
    monitor = request.app.state.runtime.loop_lag
    summary = monitor.summary()
    if reset:
        monitor.reset()
    return summary


@router.get("/readyz", tags=["health"], responses=_errors(503))
async def readyz(request: Request) -> JSONResponse:
    """MongoDB and the cluster answer; the last reconciliation's summary is included."""
    ready, checks = await request.app.state.runtime.readiness()
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(
        f"{name}: {check.get('error')}" for name, check in checks.items() if not check["ok"]
    )
    return JSONResponse(
        {"detail": f"Not ready: {failing}", "code": "NotReady", "checks": checks},
        status_code=503,
    )


def _error(
    status: int, detail: str, code: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {error.get('msg')}" if loc else str(error.get("msg")))
    return "Invalid request: " + "; ".join(parts)


_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "TooLarge",
    415: "UnsupportedMediaType",
}


API_PREFIXES = ("/users", "/healthz", "/readyz", "/debug/", "/docs", "/openapi.json")


def create_api(runtime: Any) -> FastAPI:
    """The REST app with its own docs at `/docs` (the correlation id is added around it)."""
    api = FastAPI(
        title="gooseui",
        summary="Operator console for Kubernetes-isolated Goose agent environments",
        version="0.1.0",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.state.runtime = runtime
    # no slash redirects: a redirect's Location would be built from the client's Host header
    api.router.redirect_slashes = False
    api.include_router(router)
    install_error_handlers(api)
    users = [user.id for user in runtime.settings.user_list()] if runtime is not None else []
    api.openapi = lambda: truthful_openapi(api, users)  # type: ignore[method-assign]
    return api


_ALWAYS = {
    "500": "An unexpected error; `detail` names it and the log has the request's id.",
}
_BODY = {
    "400": "The body is not JSON (or not UTF-8).",
    "413": "The request body is larger than GOOSEUI_MAX_BODY.",
}
_DATABASE = {"503": "MongoDB does not answer, or refused the credentials in MONGO_URI."}


def truthful_openapi(api: FastAPI, users: list[str] | None = None) -> dict[str, Any]:
    """The OpenAPI document as the server answers.

    FastAPI documents 422 as its own `HTTPValidationError` (a list of errors), but the
    console answers `{"detail", "code"}` for every error. Statuses that come from outside
    the route are added where they can happen: 400 and 413 for a body (from the body parser
    and the body limit), 503 where MongoDB is read, 500 everywhere. Event streams document
    their events, not a JSON body. `user_id` has this console's users as examples.
    """
    if api.openapi_schema:
        return api.openapi_schema
    schema = get_openapi(
        title=api.title, version=api.version, summary=api.summary, routes=api.routes
    )
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for response in responses.values():
                content = response.get("content") or {}
                if "text/event-stream" in content and not (
                    (content.get("application/json") or {}).get("schema")
                ):
                    content.pop("application/json", None)  # FastAPI's empty default
                body = content.get("application/json") or {}
                if str((body.get("schema") or {}).get("$ref", "")).endswith("/HTTPValidationError"):
                    body["schema"] = dict(error)
                    response["description"] = "Invalid request: `detail` names the field."
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "user_id" and users:
                    parameter.setdefault("schema", {})["examples"] = list(users)
            extra = dict(_ALWAYS)
            if "requestBody" in operation:
                extra |= _BODY
            if path.startswith("/users/{user_id}"):
                extra |= _DATABASE
            for status, description in extra.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": dict(error)}},
                    },
                )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components.setdefault("ErrorBody", ErrorBody.model_json_schema())
    for model in _EVENT_MODELS:
        event = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(event.pop("$defs", {}))
        components.setdefault(model.__name__, event)
    api.openapi_schema = schema
    return schema


class ApiDispatcher:
    """Send REST paths to the API app and the rest to NiceGUI's middleware stack.

    NiceGUI's middlewares are `BaseHTTPMiddleware`s, which pass every chunk of a streamed
    response through an in-memory channel: measurable per event on a chat stream, and
    nothing the REST API needs. So API requests go around them.
    """

    def __init__(self, nicegui: Any, api: FastAPI) -> None:
        self.nicegui = nicegui
        self.api = api

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIXES):
            await self.api(scope, receive, send)
        else:
            await self.nicegui(scope, receive, send)


def allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    """Every method some route of `scope`'s path answers, OPTIONS included.

    Starlette's 405 names only the first route that matched the path; a path served by
    several routes (GET and POST on one collection) supports all of theirs.
    """
    methods = {"OPTIONS"}
    # `router` is included without a prefix; FastAPI wraps it, so its routes are read here
    for route in [*app.router.routes, *router.routes]:
        if isinstance(route, Route) and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error a `{"detail", "code"}` body."""

    async def service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GooseUIError)
        return _error(exc.status, exc.detail, exc.code)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        for error in exc.errors():
            if error.get("type") == "json_invalid":
                reason = (error.get("ctx") or {}).get("error") or error.get("msg")
                where = error.get("loc", ())[-1]
                detail = f"The request body is not JSON: {reason} at character {where}."
                return _error(400, detail, "InvalidBody")
        return _error(422, _describe_validation(exc), "InvalidRequest")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI could not read the body at all
            return _error(400, "The request body is not UTF-8 JSON.", "InvalidBody")
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(app, request.scope))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            return _error(
                405,
                f"{request.method} is not allowed here; allowed: {allow}.",
                "MethodNotAllowed",
                {"Allow": allow},
            )
        return _error(
            exc.status_code,
            str(exc.detail),
            _CODES.get(exc.status_code, "HTTPError"),
            getattr(exc, "headers", None),
        )

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error", exc_info=exc)
        return _error(500, f"Internal error: {type(exc).__name__}: {exc}"[:300], "InternalError")

    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(GooseUIError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
