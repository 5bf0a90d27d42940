"""The idle stop against the simulated cluster: an idle project stops with reason Idle; a
reply in progress, `keep_running` and the agent's own work keep it; the clock is in MongoDB."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from gooseui.devcluster import SimClusterThread
from tests.conftest import console, live_console
from tests.test_lifecycle import new_project, url


@pytest.fixture
def idle_after_3s(console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOSEUI_IDLE_TIMEOUT", "0.05")  # minutes: 3 s, a sweep every second


async def stopped_within(client: httpx.AsyncClient, project: dict[str, Any], seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current = (await client.get(url(project))).json()
        if current["status"] == "inactive":
            return current
        await asyncio.sleep(0.1)
    return None


async def test_an_idle_project_stops_with_reason_idle(
    idle_after_3s: None, request: pytest.FixtureRequest
) -> None:
    async with console(request) as client:
        project = await new_project(client)
        activated = await client.post(url(project, "activate"))
        assert activated.status_code == 200
        assert activated.json()["last_activity_at"] is not None
        began = time.monotonic()
        stopped = await stopped_within(client, project, 10)
        assert stopped is not None, "the idle project kept running"
        assert time.monotonic() - began >= 2.5  # not before its time
        assert stopped["status_reason"] == "Idle"
        assert stopped["status_message"] == "Stopped after 0.05 min without activity."


async def test_a_reply_in_progress_and_keep_running_hold_it(
    idle_after_3s: None, request: pytest.FixtureRequest, sim: SimClusterThread
) -> None:
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        project = await new_project(http)
        assert (await http.post(url(project, "activate"))).status_code == 200
        # a reply that takes longer than the timeout: never stopped while it streams
        sim.set_agent(delta_delay=0.2)
        from nicegui import app

        runtime = app.state.runtime
        endpoint = (await http.get(url(project))).json()["endpoint"]
        began = time.monotonic()
        async with http.stream(
            "POST", url(project, "messages"), json={"message": "a slow one please"}
        ) as reply:
            seen_busy = False
            async for _ in reply.aiter_raw():
                seen_busy = seen_busy or await runtime.goose.busy(endpoint)
        took = time.monotonic() - began
        sim.set_agent(delta_delay=0.0)
        assert took > 3.5, f"the reply took only {took:.1f} s"
        assert seen_busy  # the agent says `processing` while it replies
        assert (await http.get(url(project))).json()["status"] == "active"
        # kept running: not stopped however long it idles
        patched = await http.patch(url(project), json={"keep_running": True})
        assert patched.status_code == 200 and patched.json()["keep_running"] is True
        assert await stopped_within(http, project, 3.5) is None
        # and once no longer kept, the clock (from the reply's end) has long run out
        assert (await http.patch(url(project), json={"keep_running": False})).status_code == 200
        stopped = await stopped_within(http, project, 5)
        assert stopped is not None and stopped["status_reason"] == "Idle"


async def test_the_idle_clock_survives_a_restart(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("GOOSEUI_IDLE_TIMEOUT", "0.1")  # 6 s
    async with console(request) as client:
        project = await new_project(client)
        assert (await client.post(url(project, "activate"))).status_code == 200
        began = time.monotonic()
        await asyncio.sleep(3)
    async with console(request) as client:  # a new process: it reads the clock from MongoDB
        stopped = await stopped_within(client, project, 8)
        elapsed = time.monotonic() - began
    assert stopped is not None and stopped["status_reason"] == "Idle"
    assert elapsed < 9, f"stopped {elapsed:.1f} s after the last activity: the clock restarted"


async def test_patch_refuses_what_it_does_not_know(client: httpx.AsyncClient) -> None:
    project = await new_project(client)
    refused = await client.patch(url(project), json={"keep_running": "sometimes"})
    assert refused.status_code == 422
    renamed = await client.patch(url(project), json={"name": "Renamed by PATCH"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed by PATCH"
    assert renamed.json()["keep_running"] is False
    missing = await client.patch("/users/alice/projects/abcdefgh", json={"keep_running": True})
    assert missing.status_code == 404 and missing.json()["code"] == "ProjectNotFound"


async def test_projects_from_before_the_clock_get_one_at_start(
    idle_after_3s: None, request: pytest.FixtureRequest, console_env: dict[str, str]
) -> None:
    """An active project recorded before there was an idle clock is not stopped at once
    by the first sweep after an upgrade: its clock starts when the console does."""
    from gooseui.store import create_client

    async with console(request) as client:
        project = await new_project(client)
        assert (await client.post(url(project, "activate"))).status_code == 200
        mongo = create_client(console_env["MONGO_URI"])
        await mongo[console_env["MONGO_DB"]]["projects"].update_one(
            {"project_id": project["project_id"]},
            {"$unset": {"last_activity_at": ""}, "$set": {"last_activated_at": None}},
        )
        await mongo.close()
    async with console(request) as client:
        started = (await client.get(url(project))).json()
        assert started["status"] == "active" and started["last_activity_at"] is not None
