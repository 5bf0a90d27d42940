"""The console page through NiceGUI's simulated user, against the simulated cluster."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from nicegui import app
from nicegui.testing import User

from gooseui.devcluster import SimClusterThread
from tests.test_markdown import tags


def service():
    return app.state.runtime.service


async def wait_status(user_id: str, project_id: str, status: str, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if (await service().get_project(user_id, project_id)).status == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"project never became {status}")


async def eventually(check, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


async def create_via_ui(user: User, name: str) -> str:
    user.find(marker="project-name").type(name)
    user.find(marker="create").click()
    for _ in range(250):
        projects = await service().list_projects("alice")
        if pid := next((p.project_id for p in projects if p.name == name), None):
            await user.should_see(marker=f"row-{pid}", retries=50)
            return pid
        await asyncio.sleep(0.02)
    raise AssertionError(f"project {name!r} was not created")


async def test_create_rename_delete(user: User, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await user.open("/")
    await user.should_see("No projects yet", retries=50)
    pid = await create_via_ui(user, "Alpha")
    # an operator action in the browser gets its own correlation id, like a REST request
    inserts = [
        r
        for r in caplog.records
        if r.getMessage() == "mongo.write" and r.fields.get("op") == "insert"
    ]
    assert inserts and inserts[-1].request_id not in ("", "-")
    await user.should_see(marker=f"status-{pid}")
    # a duplicate name is refused at the input
    user.find(marker="project-name").type("ALPHA")
    user.find(marker="create").click()
    await user.should_see("already exists", retries=20)
    # rename through the dialog
    user.find(marker=f"rename-{pid}").click()
    await user.should_see(marker="rename-input", retries=20)
    user.find(marker="rename-input").clear().type("Beta")
    user.find(marker="rename-save").click()

    async def renamed() -> bool:
        return (await service().get_project("alice", pid)).name == "Beta"

    await eventually(renamed)
    await user.should_see(marker=f"name-{pid}", retries=20)
    assert user.find(marker=f"name-{pid}").elements.pop().text == "Beta"
    # delete asks first, naming the project
    user.find(marker=f"delete-{pid}").click()
    await user.should_see("Delete project 'Beta'?", retries=20)
    user.find(marker="delete-confirm").click()
    await user.should_see("Project 'Beta' deleted.", retries=100)  # a toast says it is gone
    await user.should_see("No projects yet", retries=100)
    assert await service().list_projects("alice") == []


async def test_activate_chat_stop_new_conversation_deactivate(
    user: User, sim: SimClusterThread
) -> None:
    await user.open("/")
    pid = await create_via_ui(user, "Live")
    user.find(marker=f"activate-{pid}").click()
    await wait_status("alice", pid, "active")
    # Chat opens the project's page, where the chat is
    sim.set_agent(delta_delay=0.05)
    user.find(marker=f"chat-{pid}").click()
    await user.should_see("Endpoint:", retries=50)
    await user.should_see(marker="message", retries=20)
    user.find(marker="message").type("hello there")
    user.find(marker="send").click()
    await user.should_see("Hello from the", retries=100)
    reply = user.find(marker="reply").elements.pop()
    partial = reply.content
    assert "arrive." not in partial  # not complete yet
    await user.should_see("arrive.", retries=200)
    # Stop ends a running reply
    sim.set_agent(delta_delay=0.2)
    before = len(sim.agent_records("client_disconnected"))
    user.find(marker="message").type("a long reply please")
    user.find(marker="send").click()
    await user.should_see(marker="stop", retries=50)
    await asyncio.sleep(0.5)
    user.find(marker="stop").click()
    await user.should_see("Reply stopped", retries=50)
    record = await asyncio.to_thread(sim.wait_agent_record, "client_disconnected", before, 3.0)
    assert record is not None
    # New conversation
    old = (await service().get_project("alice", pid)).goose_session_id
    user.find(marker="new-conversation").click()
    await user.should_see("A new conversation has started.", retries=50)
    assert (await service().get_project("alice", pid)).goose_session_id != old
    # deactivate
    user.find(marker=f"deactivate-{pid}").click()
    await wait_status("alice", pid, "inactive")
    await user.should_see(marker=f"activate-{pid}", retries=50)


@pytest.fixture
def pull_error_image(console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's image cannot be pulled (set before the console starts)."""
    monkeypatch.setenv("ACR_IMAGE", "goose-api:pull-error")


async def test_failed_activation_shows_reason(pull_error_image: None, user: User) -> None:
    await user.open("/")
    pid = await create_via_ui(user, "Broken")
    user.find(marker=f"activate-{pid}").click()
    await wait_status("alice", pid, "failed")
    await user.should_see("ImagePullFailed", retries=50)
    await user.should_see("cannot be pulled", retries=20)
    await user.should_see("Retry", retries=20)
    # stopping a failed project makes sure nothing runs and clears the failure
    user.find(marker=f"deactivate-{pid}").click()
    await wait_status("alice", pid, "inactive")


async def test_change_over_rest_appears_live(user: User) -> None:
    await user.open("/")
    await user.should_see("No projects yet", retries=50)
    project = await service().create_project("alice", "From REST")
    await user.should_see("From REST", retries=50)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
        response = await http.post(f"/users/alice/projects/{project.project_id}/activate")
        assert response.status_code == 200
    await user.should_see(marker=f"deactivate-{project.project_id}", retries=50)

    async def shown_active() -> bool:
        return user.find(marker=f"status-{project.project_id}").elements.pop().text == "active"

    await eventually(shown_active)


async def test_chat_on_inactive_project_offers_activate(user: User) -> None:
    await user.open("/")
    project = await service().create_project("alice", "Sleeping")
    await user.should_see("Sleeping", retries=50)
    user.find(marker=f"chat-{project.project_id}").click()
    await user.should_see(marker="chat-inactive", retries=20)
    await user.should_see(marker="chat-activate", retries=20)
    user.find(marker="chat-activate").click()
    await wait_status("alice", project.project_id, "active")
    await user.should_see(marker="message", retries=50)


@pytest.fixture
def open_routes(console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Projects published on Ingress routes without a source allow-list."""
    monkeypatch.setenv("INGRESS_BASE_DOMAIN", "goose.example.com")


async def test_open_routes_are_flagged_in_the_header(open_routes: None, user: User) -> None:
    await user.open("/")
    await user.should_see(marker="warning")
    await user.should_see("Routes are open")


async def test_a_markdown_reply_renders_without_the_agents_html(
    user: User, sim: SimClusterThread
) -> None:
    """The simulated agent answers 'markdown' with a heading, code, a table, raw HTML and an
    image, as models do: the page shows the structure, the HTML as text, the image as a link."""
    await user.open("/")
    pid = await create_via_ui(user, "Rich")
    user.find(marker=f"activate-{pid}").click()
    await wait_status("alice", pid, "active")
    user.find(marker=f"chat-{pid}").click()
    await user.should_see(marker="message", retries=20)
    user.find(marker="message").type("markdown please")
    user.find(marker="send").click()
    await user.should_see("a chart", retries=200)
    reply = user.find(marker="reply").elements.pop()
    markup = reply.props["innerHTML"]
    assert "<table>" in markup and "<h2>" in markup and "codehilite" in markup
    assert "&lt;img" in markup  # the model's raw HTML, as text
    elements = tags(markup)
    assert "img" not in {name for name, _ in elements}
    assert not [key for _, attrs in elements for key in attrs if key.startswith("on")]
    assert 'href="https://example.invalid/chart.png"' in markup
