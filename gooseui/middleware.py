"""ASGI middleware that gives every HTTP request a correlation id and an access-log line."""

from __future__ import annotations

import json
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gooseui.logs import log, new_request_id, request_id

logger = logging.getLogger("gooseui.http")

HEADER = b"x-request-id"
_VALID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
# NiceGUI's own assets and websocket chatter would drown the operator's requests.
_QUIET_PREFIXES = ("/_nicegui",)


class CorrelationMiddleware:
    """Accept `X-Request-ID` (or make one), return it, and put it on every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(HEADER, b"").decode("latin-1")
        rid = incoming if _VALID.match(incoming) else new_request_id()
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                headers.append((HEADER, rid.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Starlette re-raises what its 500 handler answered (and logged), so that servers
            # can log it again; once is enough, and the server's copy has no request id.
            if not answered:
                logger.error("unexpected error", exc_info=exc)
                detail = f"Internal error: {type(exc).__name__}"
                await send_error(send_with_id, 500, detail, "InternalError")
            elif status != 500:
                logger.error("response failed after it started", exc_info=exc)
        finally:
            path: str = scope.get("path", "")
            if not path.startswith(_QUIET_PREFIXES):
                log(
                    logger,
                    "http.request",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
            request_id.reset(token)


async def send_error(send: Send, status: int, detail: str, code: str, close: bool = False) -> None:
    """Answer `{"detail", "code"}` from below the web framework (which has no say here)."""
    body = json.dumps({"detail": detail, "code": code}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """A request body over the limit."""


class BodyLimitMiddleware:
    """Refuse request bodies over `limit` bytes with 413, before reading past the limit.

    A declared Content-Length over the limit is refused at once; a body without one (chunked)
    is read up to the limit and refused as soon as it goes over. Memory stays at the limit
    whatever is sent. Bodies within it are read here and handed on whole (the console's
    bodies are small JSON documents), so nothing after this can be surprised by a large one.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replayed() -> Message:
            if replay:
                return replay.pop()
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replayed, send)

    async def _refuse(self, send: Send) -> None:
        detail = f"The request body is larger than {self.limit} bytes."
        await send_error(send, 413, detail, "BodyTooLarge", close=True)
