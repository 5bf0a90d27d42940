"""The pages of v2 through NiceGUI's simulated user: addresses, the list's view, the project
page (timeline, cancel, remedy, log, events), and the chat's end when its project goes."""

from __future__ import annotations

import asyncio

import pytest
from nicegui import app, ui
from nicegui.testing import User

from gooseui.devcluster import SimClusterThread
from gooseui.errors import UpstreamFailed
from tests.conftest import MONGO_PASSWORD_MARKER
from tests.test_ui import eventually, wait_status


def service():
    return app.state.runtime.service


def page_of(pid: str, user_id: str = "alice") -> str:
    return f"/ui/users/{user_id}/projects/{pid}"


def names_shown(user: User) -> list[str]:
    """The project names on the page, top to bottom (elements are made in that order)."""
    links = [
        e
        for e in user.find(kind=ui.link).elements
        if any(m.startswith("name-") for m in e._markers)
    ]
    return [e.text for e in sorted(links, key=lambda e: e.id)]


async def test_root_opens_the_last_user_and_pages_have_addresses(user: User) -> None:
    await user.open("/")
    await user.should_see("No projects yet", retries=50)
    assert user.back_history[-1] == "/"  # redirected to the first user's page
    await user.open("/ui/users/bob")
    await user.should_see("Bob Brenner", retries=20)
    await user.open("/")  # this browser worked with Bob last
    await user.should_see(marker="crumb", retries=20)
    assert user.find(marker="crumb").elements.pop().text == "Bob Brenner"
    await user.open("/ui/users/nobody")
    await user.should_see("There is no user 'nobody'.")


async def test_search_filter_sort_and_count(user: User) -> None:
    names = [f"Market {i:02d}" for i in range(12)] + ["Zeta", "alpha research"]
    created = [await service().create_project("alice", name) for name in names]
    await user.open("/ui/users/alice")
    await user.should_see("14 projects", retries=50)
    assert names_shown(user)[0] == "alpha research"  # newest first
    user.find(marker="search").type("market 1")
    await user.should_see("2 of 14", retries=50)
    assert sorted(names_shown(user)) == ["Market 10", "Market 11"]
    user.find(marker="search").clear().type(created[3].project_id[:6])  # by id
    await user.should_see("1 of 14", retries=50)
    assert names_shown(user) == ["Market 03"]
    user.find(marker="search").clear()
    sort = user.find(marker="sort").elements.pop()
    sort.set_value("name")
    await user.should_see("14 projects", retries=50)

    async def by_name() -> bool:
        return names_shown(user)[:3] == ["alpha research", "Market 00", "Market 01"]

    await eventually(by_name)
    await service().activate("alice", created[5].project_id)
    user.find(marker="status-filter").elements.pop().set_value("active")
    await user.should_see("1 of 14", retries=50)
    assert names_shown(user) == ["Market 05"]
    user.find(marker="status-filter").elements.pop().set_value("inactive")
    await user.should_see("13 of 14", retries=50)


async def test_a_pasted_project_address_shows_the_project(user: User) -> None:
    project = await service().create_project("alice", "Deep link")
    await service().activate("alice", project.project_id)
    await user.open(page_of(project.project_id))
    await user.should_see("Deep link", retries=50)
    await user.should_see("Endpoint:", retries=50)
    await user.should_see(marker="timeline-step", retries=50)
    timeline = user.find(marker="timeline").elements.pop()
    steps = [e.text for e in timeline.descendants() if isinstance(e, ui.label)]
    assert "start" in steps and "ready" in steps
    await user.open(page_of("zzzzzzzz"))
    await user.should_see(marker="not-found", retries=50)


@pytest.fixture
def never_ready(console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACR_IMAGE", "goose-api:never-ready")


async def test_a_never_ready_activation_can_be_cancelled(never_ready: None, user: User) -> None:
    project = await service().create_project("alice", "Stuck")
    pid = project.project_id
    await user.open(page_of(pid))
    await user.should_see(marker=f"activate-{pid}", retries=50)
    user.find(marker=f"activate-{pid}").click()
    await wait_status("alice", pid, "activating")
    await user.should_see(marker=f"cancel-{pid}", retries=50)

    async def elapsed_shown() -> bool:
        return "s)" in user.find(marker=f"cancel-{pid}").elements.pop().text

    await eventually(elapsed_shown)
    user.find(marker=f"cancel-{pid}").click()
    await wait_status("alice", pid, "inactive")
    await user.should_see("Activation cancelled", retries=50)


@pytest.fixture
def pull_error(console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACR_IMAGE", "goose-api:pull-error")


async def test_a_failure_names_its_remedy_and_its_evidence(pull_error: None, user: User) -> None:
    project = await service().create_project("alice", "Unpullable")
    pid = project.project_id
    with pytest.raises(UpstreamFailed):
        await service().activate("alice", pid)
    await user.open(page_of(pid))
    await user.should_see("ImagePullFailed", retries=50)
    await user.should_see("What to do:", retries=20)
    await user.should_see("ACR_IMAGE", retries=20)
    user.find(marker="remedy-link").click()
    await user.should_see(marker="cluster-events", retries=20)

    async def pull_events() -> bool:
        rows = user.find(marker="cluster-events").elements.pop().descendants()
        return any("image" in getattr(e, "text", "").lower() for e in rows)

    await eventually(pull_events)


async def test_the_log_is_shown_redacted(user: User) -> None:
    project = await service().create_project("alice", "Talkative")
    await service().activate("alice", project.project_id)
    await user.open(page_of(project.project_id) + "?tab=logs")
    await user.should_see(marker="logs", retries=50)

    async def logged() -> bool:
        log = user.find(marker="logs").elements.pop()
        return any("••••" in line.text for line in log.descendants())

    await eventually(logged)
    text = "\n".join(line.text for line in user.find(marker="logs").elements.pop().descendants())
    assert MONGO_PASSWORD_MARKER not in text


async def test_the_chat_ends_when_its_project_is_deleted_elsewhere(user: User) -> None:
    project = await service().create_project("alice", "Doomed")
    await service().activate("alice", project.project_id)
    await user.open(page_of(project.project_id))
    await user.should_see(marker="message", retries=50)
    await service().delete_project("alice", project.project_id)
    await user.should_see(marker="chat-closed", retries=100)
    await user.should_see("This project has been deleted.")


async def test_deleting_an_active_project_says_what_it_stops(user: User) -> None:
    project = await service().create_project("alice", "Running")
    await service().activate("alice", project.project_id)
    await user.open(page_of(project.project_id))
    await user.should_see(marker=f"delete-{project.project_id}", retries=50)
    user.find(marker=f"delete-{project.project_id}").click()
    await user.should_see("Its agent is running", retries=20)
    user.find(marker="delete-no").click()
    await asyncio.sleep(0.2)
    assert (await service().get_project("alice", project.project_id)).status == "active"


async def test_deactivating_during_a_reply_asks_first(user: User, sim: SimClusterThread) -> None:
    project = await service().create_project("alice", "Busy chat")
    pid = project.project_id
    await service().activate("alice", pid)
    await user.open(page_of(pid))
    await user.should_see(marker="message", retries=50)
    sim.set_agent(delta_delay=0.2)
    user.find(marker="message").type("a long reply please")
    user.find(marker="send").click()
    await user.should_see(marker="stop", retries=50)
    user.find(marker=f"deactivate-{pid}").click()
    await user.should_see("A reply is still streaming", retries=20)
    user.find(marker="deactivate-confirm").click()
    await wait_status("alice", pid, "inactive")
    await user.should_see(marker="chat-inactive", retries=50)


async def test_tool_calls_are_shown_again_after_a_reload(user: User) -> None:
    project = await service().create_project("alice", "Tools")
    await service().activate("alice", project.project_id)
    await user.open(page_of(project.project_id))
    await user.should_see(marker="message", retries=50)
    user.find(marker="message").type("please use a tool")
    user.find(marker="send").click()
    await user.should_see(marker="tool", retries=100)
    await user.should_see("arrive.", retries=200)
    await asyncio.sleep(0.3)  # the reply's record is written just after it
    await user.open(page_of(project.project_id))  # a reload
    await user.should_see(marker="tool", retries=50)
    await user.should_see("please use a tool", retries=20)


@pytest.fixture
def no_pods_allowed(console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOSEUI_QUOTA_PODS", "0")


async def test_a_full_quota_links_to_the_quota(no_pods_allowed: None, user: User) -> None:
    project = await service().create_project("alice", "Over quota")
    pid = project.project_id
    with pytest.raises(UpstreamFailed):
        await service().activate("alice", pid)
    await user.open(page_of(pid))
    await user.should_see("QuotaExceeded", retries=50)
    await user.should_see("GOOSEUI_QUOTA_PODS", retries=20)  # the remedy names the setting
    user.find(marker="remedy-link").click()
    await user.should_see(marker="quota", retries=20)

    async def shown() -> bool:
        quota = user.find(marker="quota").elements.pop()
        return any("pods 0 of 0" in getattr(e, "text", "") for e in quota.descendants())

    await eventually(shown)


@pytest.fixture
def idle_after_6s(console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOSEUI_IDLE_TIMEOUT", "0.1")


async def test_the_page_says_when_an_idle_project_stops_and_can_keep_it(
    idle_after_6s: None, user: User
) -> None:
    project = await service().create_project("alice", "Idler")
    pid = project.project_id
    await service().activate("alice", pid)
    await user.open(page_of(pid))
    await user.should_see("stops in", retries=50)
    user.find(marker="keep-running").click()

    async def kept() -> bool:
        return (await service().get_project("alice", pid)).keep_running

    await eventually(kept)
    await user.should_see("kept running", retries=50)
    user.find(marker="keep-running").click()  # and let it go: it stops as idle
    await wait_status("alice", pid, "inactive", seconds=15)
    await user.should_see("without activity", retries=50)
    stopped = await service().get_project("alice", pid)
    assert stopped.status_reason == "Idle"


async def test_start_and_send_wakes_a_stopped_project(user: User) -> None:
    project = await service().create_project("alice", "Sleeper")
    pid = project.project_id
    await user.open(page_of(pid))
    await user.should_see(marker="chat-inactive", retries=50)
    await user.should_see("Start and send", retries=20)
    user.find(marker="message").type("wake up and answer")
    user.find(marker="send").click()
    await user.should_see(marker="waking", retries=50)
    await user.should_see("arrive.", retries=300)
    assert (await service().get_project("alice", pid)).status == "active"
    await user.should_see(marker="new-conversation", retries=50)  # a normal chat from now on


async def test_the_agents_model_is_set_on_the_page(user: User) -> None:
    project = await service().create_project("alice", "Modelled")
    await user.open(page_of(project.project_id))
    await user.should_see("Model: the agent environment's", retries=50)
    user.find(marker="edit-model").click()
    await user.should_see(marker="model-input", retries=20)
    user.find(marker="model-input").type("two words")
    user.find(marker="model-save").click()
    await user.should_see("as the provider names it", retries=20)  # refused, with the rule
    user.find(marker="model-input").clear().type("gpt-test-3")
    user.find(marker="model-save").click()
    await user.should_see("Model: gpt-test-3", retries=50)
    assert (await service().get_project("alice", project.project_id)).model == "gpt-test-3"


def test_every_status_badge_is_aa_on_white_text() -> None:
    """The browser test measures the badges a page shows; this covers every status's."""
    from gooseui.ui.layout import PRIMARY, STATUS_COLORS

    def luminance(hex_color: str) -> float:
        channels = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    for status, color in {**STATUS_COLORS, "primary": PRIMARY}.items():
        ratio = (1.05) / (luminance(color) + 0.05)
        assert ratio >= 4.5, f"{status}: {color} on white is {ratio:.2f}:1"
