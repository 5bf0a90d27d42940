"""Wiring: the console's routes, pages and lifespan on NiceGUI's FastAPI app.

NiceGUI's `app` is a FastAPI app, so the REST routes are mounted on it beside the pages:
one process, one event loop. NiceGUI does not await async startup handlers, so the
runtime is started by wrapping the app's lifespan instead, which uvicorn (and NiceGUI's
test client) awaits before serving anything.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nicegui import app, ui
from nicegui.storage import Storage

from gooseui import api
from gooseui import ui as pages
from gooseui.config import Settings
from gooseui.logs import log
from gooseui.middleware import BodyLimitMiddleware, CorrelationMiddleware
from gooseui.runtime import Runtime

logger = logging.getLogger("gooseui.app")

_NICEGUI_LIFESPAN = app.router.lifespan_context
_NICEGUI_MIDDLEWARE = app.build_middleware_stack


def _storage_secret(settings: Settings) -> str:
    """The secret for NiceGUI's browser storage: configured, or made once per data dir."""
    if settings.storage_secret:
        return settings.storage_secret
    path = settings.data_dir / "storage-secret"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.write_text(secret, encoding="utf-8")
    path.chmod(0o600)
    return secret


def build(
    settings: Settings, *, exit_on_startup_failure: bool = False, simulated: bool = False
) -> Runtime:
    """Register the console on NiceGUI's app; the runtime starts with the app's lifespan."""
    runtime = Runtime(settings, simulated=simulated)
    app.state.runtime = runtime
    # each browser's last user (`/` opens it) is kept with the console's data, not in the
    # working directory
    Storage.path = (settings.data_dir / "browser-storage").resolve()
    rest = api.create_api(runtime)
    # the REST routes sit beside the pages, in front of NiceGUI's middlewares (see ApiDispatcher)
    # outermost, so every answer (a 413 here, a 500 from either app) carries the request's id
    # and every request gets one access-log line, pages included
    app.build_middleware_stack = lambda: CorrelationMiddleware(
        BodyLimitMiddleware(api.ApiDispatcher(_NICEGUI_MIDDLEWARE(), rest), settings.max_body)
    )
    app.middleware_stack = None
    pages.register()

    @asynccontextmanager
    async def lifespan(fastapi_app: Any) -> AsyncIterator[None]:
        try:
            await runtime.start()
        except Exception as exc:
            log(logger, "console.start_failed", logging.ERROR, error=str(exc))
            await runtime.stop()
            if exit_on_startup_failure:  # one line for the operator, not a traceback
                os._exit(3)
            raise
        # Everything made at start lives as long as the process: keep it out of the cyclic
        # garbage collector's full passes, which otherwise stall the loop for ~100 ms each.
        gc.collect()
        gc.freeze()
        # the OpenAPI document lists Unicode's character classes (~0.3 s of CPU): made in a
        # thread now, not on the event loop by the first request for it
        warm = asyncio.create_task(asyncio.to_thread(rest.openapi))
        try:
            async with _NICEGUI_LIFESPAN(fastapi_app):
                yield
        finally:
            await runtime.stop()
            await warm

    app.router.lifespan_context = lifespan
    return runtime


def run(
    settings: Settings, *, exit_on_startup_failure: bool = False, simulated: bool = False
) -> None:
    """Build the console and serve it (under NiceGUI's test client this only configures)."""
    build(settings, exit_on_startup_failure=exit_on_startup_failure, simulated=simulated)
    ui.run(
        host=settings.host,
        port=settings.port,
        title="gooseui",
        favicon="🪿",
        reload=False,
        show=False,
        fastapi_docs=False,  # the REST app serves /docs itself
        show_welcome_message=False,
        storage_secret=_storage_secret(settings),
        uvicorn_logging_level="warning",
    )
