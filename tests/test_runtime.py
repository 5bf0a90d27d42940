"""The console's start-up: embedded database, persistence across restarts, MongoDB down."""

from __future__ import annotations

import pytest
from nicegui.testing import User
from nicegui.testing.general_fixtures import get_path_to_main_file
from nicegui.testing.user_simulation import user_simulation


async def test_restart_keeps_projects_with_embedded_database(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.delenv("MONGO_URI")  # no MONGO_URI: the console starts its own database
    main_file = get_path_to_main_file(request)
    async with user_simulation(main_file=main_file) as first:
        ready = (await first.http_client.get("/readyz")).json()
        assert ready["checks"]["mongodb"]["target"].startswith("embedded (")
        created = await first.http_client.post("/users/carol/projects", json={"name": "Kept"})
        assert created.status_code == 201
    async with user_simulation(main_file=main_file) as second:
        listed = (await second.http_client.get("/users/carol/projects")).json()
        assert [p["project_id"] for p in listed] == [created.json()["project_id"]]
        duplicate = await second.http_client.post("/users/carol/projects", json={"name": "kept"})
        assert duplicate.status_code == 409  # the unique index came back too


async def test_mongodb_down_console_still_serves(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("MONGO_URI", "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300")
    async with user_simulation(main_file=get_path_to_main_file(request)) as user:
        client = user.http_client
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["code"] == "NotReady" and body["detail"].startswith("Not ready: mongodb:")
        failed = await client.post("/users/alice/projects", json={"name": "x"})
        assert failed.status_code == 503
        assert failed.json()["code"] == "DatabaseUnavailable"
        assert "MongoDB is not answering" in failed.json()["detail"]


async def test_refused_mongodb_credentials_are_named(
    console_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    mongo_uri: str,
) -> None:
    """A wrong password is not an unreachable server (issue 10)."""
    if "@" in mongo_uri:
        pytest.skip("the test MongoDB already carries credentials")
    wrong = mongo_uri.replace("mongodb://", "mongodb://nobody:wrong@", 1)
    # well inside /readyz's 2.5 s per check, also on a busy machine
    monkeypatch.setenv("MONGO_URI", wrong + "&serverSelectionTimeoutMS=1000")
    async with user_simulation(main_file=get_path_to_main_file(request)) as user:
        client = user.http_client
        failed = await client.post("/users/alice/projects", json={"name": "x"})
        assert failed.status_code == 503, failed.text
        assert failed.json()["code"] == "DatabaseAuthFailed"
        assert "refused the credentials in MONGO_URI" in failed.json()["detail"]
        assert "wrong" not in failed.text
        ready = (await client.get("/readyz")).json()
        assert "refused the credentials" in ready["detail"]


async def test_page_shows_users_projects(user: User) -> None:
    from nicegui import app

    await app.state.runtime.service.create_project("alice", "Shown on the page")
    await user.open("/")
    await user.should_see("Alice Anders")
    await user.should_see("Shown on the page", retries=20)
    await user.should_see("Database:")


async def test_a_killed_embedded_database_is_restarted_with_its_data(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """kill -9 of SecantusDB: the console starts it again with its storage and reconnects,
    and the page's header says what happened."""
    import asyncio
    import os
    import signal

    from nicegui import app

    monkeypatch.delenv("MONGO_URI")
    async with user_simulation(main_file=get_path_to_main_file(request)) as user:
        client = user.http_client
        kept = await client.post("/users/carol/projects", json={"name": "Kept"})
        assert kept.status_code == 201
        embedded = app.state.runtime.embedded
        os.kill(embedded._process.pid, signal.SIGKILL)
        for _ in range(300):
            created = await client.post("/users/carol/projects", json={"name": "After"})
            if created.status_code == 201:
                break
            assert created.status_code == 503, created.text  # meanwhile: unavailable, said so
            await asyncio.sleep(0.05)
        assert created.status_code == 201
        names = [p["name"] for p in (await client.get("/users/carol/projects")).json()]
        assert names == ["After", "Kept"]
        mongodb = (await client.get("/readyz")).json()["checks"]["mongodb"]
        assert mongodb["ok"] and mongodb["restarts"] == 1
        assert "exit code -9" in mongodb["notice"]
        await user.open("/")
        await user.should_see("Database restarted", retries=50)
