"""The main journey in a real browser (Debian's chromium and chromium-driver, via selenium).

Screenshots of every step are saved under tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from nicegui.testing import Screen
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from gooseui.devcluster import SimClusterThread
from tests.conftest import MONGO_PASSWORD_MARKER

SHOTS = Path(__file__).parent / "screenshots"

pytestmark = pytest.mark.skipif(
    shutil.which("chromedriver") is None,
    reason="chromium-driver is not installed (.ci/run installs it)",
)


def field(screen: Screen, label: str):
    return screen.selenium.find_element(
        By.XPATH,
        f"//label[.//*[normalize-space(text())='{label}']]//*[self::input or self::textarea]",
    )


def until(condition, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # the page may be re-rendering the element we look at
            pass
        time.sleep(0.05)
    raise AssertionError("the page never showed what was expected")


def visible_text(screen: Screen) -> str:
    return screen.selenium.find_element(By.TAG_NAME, "body").text


CONTRAST_JS = """
function lum(c) {
  const v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(x => x / 255)
    .map(x => x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4));
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
function background(el) {
  for (; el; el = el.parentElement) {
    const c = getComputedStyle(el).backgroundColor;
    if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c;
  }
  return 'rgb(255, 255, 255)';
}
return [...document.querySelectorAll(arguments[0])]
  .filter(el => el.offsetParent !== null)
  .map(el => {
    const a = lum(getComputedStyle(el).color), b = lum(background(el));
    return [el.innerText.trim(), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  });
"""


def shooter(screen: Screen):
    SHOTS.mkdir(exist_ok=True)

    def shot(name: str) -> None:
        screen.selenium.save_screenshot(str(SHOTS / f"{name}.png"))

    return shot


def rest(screen: Screen, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, screen.url + path, timeout=60, **kwargs)


def no_sideways_scroll(screen: Screen) -> None:
    width, inner = screen.selenium.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert width <= inner, f"the page scrolls sideways: {width} px wide in a {inner} px window"


LAST_MESSAGE_JS = """
const area = document.querySelector('.q-scrollarea__container');
const messages = area.querySelectorAll('.nicegui-markdown, .whitespace-pre-wrap');
const last = messages[messages.length - 1].getBoundingClientRect();
const box = area.getBoundingClientRect();
return [last.bottom, box.top, box.bottom, window.innerHeight];
"""


def test_main_journey(screen: Screen, console_env: dict[str, str], sim: SimClusterThread) -> None:
    """At 1400 px: pick a user, create, activate, chat on the project's page (the reply
    streams, the view follows it to its end), and `/` comes back to the same user."""
    shot = shooter(screen)
    sim.set_agent(delta_delay=0.02)
    screen.open("/", timeout=30)
    until(lambda: "Alice Anders" in visible_text(screen) and "Cluster:" in visible_text(screen))
    assert screen.selenium.execute_script("return document.documentElement.lang") == "en-US"
    # pick a user: the address follows
    screen.find_by_css(".q-select").click()  # the user picker (the title names Alice too)
    screen.click("Bob Brenner")
    until(lambda: "No projects yet" in visible_text(screen))
    until(lambda: screen.selenium.current_url.endswith("/ui/users/bob"))
    shot("01-user-picked")
    field(screen, "Project name").send_keys("Browser journey")
    screen.click("Create")
    until(lambda: "Browser journey" in visible_text(screen) and "inactive" in visible_text(screen))
    shot("02-created")
    screen.click("Activate")
    until(lambda: "active" in visible_text(screen).split())
    shot("03-active")
    # Chat opens the project's page, with the chat at full height
    screen.click("Chat")
    until(lambda: "Endpoint:" in visible_text(screen))
    until(lambda: field(screen, "Message").is_displayed())
    assert "/ui/users/bob/projects/" in screen.selenium.current_url
    message = field(screen, "Message")
    message.send_keys("first line" + Keys.SHIFT + Keys.ENTER + Keys.SHIFT + "second line")
    assert "second line" in message.get_attribute("value")  # Shift+Enter: a new line, not sent
    assert "Hello from the" not in visible_text(screen)
    message.send_keys(Keys.ENTER)  # Enter sends
    until(lambda: "Hello from the" in visible_text(screen))
    partial = visible_text(screen)
    shot("04-streaming")
    until(lambda: "arrive." in visible_text(screen))
    assert "arrive." not in partial, "the reply should have been seen before it was complete"
    # a long reply: the view follows it, its end is in sight
    field(screen, "Message").send_keys("markdown please" + Keys.ENTER)
    until(lambda: "a chart" in visible_text(screen))
    time.sleep(0.5)
    bottom, top, box_bottom, viewport = screen.selenium.execute_script(LAST_MESSAGE_JS)
    assert top <= bottom <= box_bottom + 2 and box_bottom <= viewport + 2, (
        bottom,
        top,
        box_bottom,
        viewport,
    )
    shot("05-long-reply-followed")
    # `/` opens the user this browser worked with last
    screen.open("/")
    until(lambda: "Browser journey" in visible_text(screen))
    assert "Bob Brenner" in visible_text(screen)
    shot("06-root-remembers-user")
    # WCAG AA: every badge and button on the list reads at 4.5:1 or better
    for selector in (".status-badge", ".q-btn"):
        low = [
            (text, round(ratio, 2))
            for text, ratio in screen.selenium.execute_script(CONTRAST_JS, selector)
            if ratio < 4.5
        ]
        assert not low, f"{selector} below 4.5:1: {low}"


def test_search_among_40_and_a_deep_link_on_a_phone(
    screen: Screen, console_env: dict[str, str], sim: SimClusterThread
) -> None:
    shot = shooter(screen)
    screen.open("/", timeout=30)
    ids = []
    for i in range(40):
        created = rest(screen, "POST", "/users/alice/projects", json={"name": f"Survey {i:02d}"})
        ids.append(created.json()["project_id"])
    assert rest(screen, "POST", f"/users/alice/projects/{ids[7]}/activate").status_code == 200
    screen.open("/ui/users/alice")
    until(lambda: "40 projects" in visible_text(screen))
    field(screen, "Search name or id").send_keys("survey 0")
    until(lambda: "10 of 40" in visible_text(screen))
    assert "Survey 17" not in visible_text(screen)
    shot("07-search-among-40")
    # the view is in the address, so it can be linked
    until(lambda: "q=survey+0" in screen.selenium.current_url)
    # a phone: no sideways scroll, actions in a menu, the names keep their line
    screen.selenium.set_window_size(390, 844)
    screen.open("/ui/users/alice")
    until(lambda: "40 projects" in visible_text(screen))
    no_sideways_scroll(screen)
    # the actions fold into a menu, labelled with the project it acts on
    screen.find_by_css('[aria-label="Actions for Survey 39"]').click()
    until(lambda: "Rename" in visible_text(screen) and "Activate" in visible_text(screen))
    shot("08-phone-list-menu")
    screen.selenium.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    # a pasted address of a project, in a fresh tab: the same page
    screen.selenium.switch_to.new_window("tab")
    screen.open(f"/ui/users/alice/projects/{ids[7]}")
    until(lambda: "Endpoint:" in visible_text(screen) and "Survey 07" in visible_text(screen))
    until(lambda: field(screen, "Message").is_displayed())
    no_sideways_scroll(screen)
    assert screen.selenium.title.startswith("Survey 07")
    shot("09-phone-project-page")
    screen.selenium.set_window_size(1400, 1000)


def test_logs_redacted_and_cancel_of_a_never_ready_activation(
    screen: Screen, console_env: dict[str, str], sim: SimClusterThread
) -> None:
    shot = shooter(screen)
    screen.open("/", timeout=30)
    project = rest(screen, "POST", "/users/alice/projects", json={"name": "Log reader"}).json()
    pid = project["project_id"]
    assert rest(screen, "POST", f"/users/alice/projects/{pid}/activate").status_code == 200
    screen.open(f"/ui/users/alice/projects/{pid}?tab=logs")
    until(lambda: "MONGODB_URL" in visible_text(screen))
    text = visible_text(screen)
    assert "••••" in text and MONGO_PASSWORD_MARKER not in text
    line = screen.selenium.find_element(By.XPATH, "//*[contains(text(), 'MONGODB_URL')]")
    screen.selenium.execute_script("arguments[0].scrollIntoView({block: 'center'})", line)
    shot("10-logs-redacted")
    # an activation that never becomes ready, cancelled from its page
    rest(screen, "POST", f"/users/alice/projects/{pid}/deactivate")
    sim.set_slow_readiness(600.0)
    screen.open(f"/ui/users/alice/projects/{pid}")
    until(lambda: "Activate" in visible_text(screen))
    screen.click("Activate")
    until(lambda: "Cancel (" in visible_text(screen))
    shot("11-activation-cancellable")
    screen.click("Cancel (")
    until(lambda: "Activation cancelled" in visible_text(screen))
    assert rest(screen, "GET", f"/users/alice/projects/{pid}").json()["status"] == "inactive"
    shot("12-activation-cancelled")
    sim.set_slow_readiness(0.0)
