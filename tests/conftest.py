"""Shared fixtures: a real MongoDB-compatible server over TCP and the console's ASGI app."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nicegui.testing import User
from nicegui.testing.general_fixtures import get_path_to_main_file
from nicegui.testing.user_simulation import user_simulation

from gooseui.embedded import EmbeddedMongo
from gooseui.store import Document, ProjectStore, create_client

CONSOLE_ENV_PREFIXES = (
    "GOOSEUI_",
    "MONGO_",
    "KUBECONFIG",
    "ACR_IMAGE",
    "NAMESPACE_PREFIX",
    "INGRESS_BASE_DOMAIN",
    "PROJECTS_COLLECTION",
)


@pytest.fixture(scope="session")
async def mongo_uri() -> AsyncIterator[str]:
    """SecantusDB on a free loopback port, or GOOSEUI_TEST_MONGO_URI to test a real MongoDB."""
    if uri := os.environ.get("GOOSEUI_TEST_MONGO_URI"):
        yield uri
        return
    server = EmbeddedMongo(":memory:")
    yield await server.start()
    await server.stop()


@pytest.fixture
def console_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mongo_uri: str) -> dict[str, str]:
    """A clean environment for one console: its own database name and data directory."""
    for name in list(os.environ):
        if name.startswith(CONSOLE_ENV_PREFIXES) and not name.startswith("GOOSEUI_TEST_"):
            monkeypatch.delenv(name)
    env = {
        "MONGO_URI": mongo_uri,
        "MONGO_DB": f"t_{uuid.uuid4().hex[:12]}",
        "GOOSEUI_DATA_DIR": str(tmp_path / "data"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
async def client(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the whole console app (routes, middleware, lifespan), over ASGI."""
    async with user_simulation(main_file=get_path_to_main_file(request)) as user:
        yield user.http_client


@pytest.fixture
async def store(mongo_uri: str) -> AsyncIterator[ProjectStore]:
    mongo = create_client(mongo_uri)
    yield ProjectStore(mongo, f"t_{uuid.uuid4().hex[:12]}", "projects")
    await mongo.close()


def new_doc(
    user_id: str = "alice", project_id: str | None = None, name: str = "One", **extra: object
) -> Document:
    from gooseui.service import new_project_id
    from gooseui.store import name_key, now

    moment = now()
    return {
        "user_id": user_id,
        "project_id": project_id or new_project_id(),
        "name": name,
        "name_key": name_key(name),
        "status": "inactive",
        "created_at": moment,
        "updated_at": moment,
        **extra,
    }


@pytest.fixture
async def user(
    console_env: dict[str, str], caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> AsyncIterator[User]:
    """NiceGUI's simulated user, on a console whose environment is set before it starts."""
    async with user_simulation(main_file=get_path_to_main_file(request)) as simulated:
        yield simulated
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail(f"There were unexpected ERROR logs: {errors[0].getMessage()}", pytrace=False)
