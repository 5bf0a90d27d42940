"""ASGI middleware that gives every HTTP request a correlation id and an access-log line."""

from __future__ import annotations

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

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                headers.append((HEADER, rid.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
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
