"""Wake on message: `"activate": true` starts a stopped project and streams its activation's
progress, then the agent's reply, in one response; a failed wake ends with its reason."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import live_console
from tests.test_lifecycle import new_project, url


async def events_of(http: httpx.AsyncClient, project: dict[str, Any], **body: Any) -> list[dict]:
    async with http.stream("POST", url(project, "messages"), json=body) as response:
        assert response.status_code == 200, await response.aread()
        raw = await response.aread()
    return [json.loads(block[5:]) for block in raw.split(b"\n\n") if block.startswith(b"data:")]


async def test_a_message_wakes_a_stopped_project(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        project = await new_project(http)
        refused = await http.post(url(project, "messages"), json={"message": "hello"})
        assert refused.status_code == 409 and refused.json()["code"] == "NotActive"
        events = await events_of(http, project, message="hello, wake up", activate=True)
        kinds = [e["type"] for e in events]
        first_session = kinds.index("session")
        progress = [e for e in events[:first_session] if e["type"] == "activation"]
        assert progress and all(e["type"] == "activation" for e in events[:first_session])
        steps = [e["content"]["step"] for e in progress]
        assert "apply" in steps and steps[-1] == "ready"
        assert kinds[-1] == "complete" and "message" in kinds[first_session:]
        text = "".join(e["content"]["content"] for e in events if e["type"] == "message")
        assert "hello, wake up" in text
        assert (await http.get(url(project))).json()["status"] == "active"
        # an active project: the flag changes nothing
        again = await events_of(http, project, message="still there?", activate=True)
        assert again[0]["type"] == "session" and again[-1]["type"] == "complete"


async def test_a_failed_wake_ends_with_its_reason(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("ACR_IMAGE", "goose-api:pull-error")
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        project = await new_project(http)
        events = await events_of(http, project, message="hello", activate=True)
        assert events[0]["type"] == "activation"
        assert events[-1]["type"] == "error"
        assert events[-1]["content"]["code"] == "ImagePullFailed"
        assert "session" not in [e["type"] for e in events]
        stored = (await http.get(url(project))).json()
        assert stored["status"] == "failed" and stored["status_reason"] == "ImagePullFailed"


async def test_two_wakes_at_once_share_one_activation(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    """Two tabs send to the same stopped project at once: one activation, two replies."""
    import asyncio

    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        project = await new_project(http)
        first, second = await asyncio.gather(
            events_of(http, project, message="one", activate=True),
            events_of(http, project, message="two", activate=True),
        )
        for events in (first, second):
            assert events[-1]["type"] == "complete", events[-3:]
        for events in (first, second):  # each follows the one activation, none a second
            steps = [e["content"]["step"] for e in events if e["type"] == "activation"]
            assert steps.count("start") <= 1 and steps.count("ready") <= 1
