"""The main journey in a real browser (Debian's chromium and chromium-driver, via selenium).

Screenshots of every step are saved under tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from nicegui.testing import Screen
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from gooseui.devcluster import SimClusterThread

SHOTS = Path(__file__).parent / "screenshots"

pytestmark = pytest.mark.skipif(
    shutil.which("chromedriver") is None,
    reason="chromium-driver is not installed (.ci/run installs it)",
)


def field(screen: Screen, label: str):
    return screen.selenium.find_element(
        By.XPATH, f"//label[.//*[normalize-space(text())='{label}']]//input"
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


def test_main_journey(screen: Screen, console_env: dict[str, str], sim: SimClusterThread) -> None:
    SHOTS.mkdir(exist_ok=True)

    def shot(name: str) -> None:
        screen.selenium.save_screenshot(str(SHOTS / f"{name}.png"))

    sim.set_agent(delta_delay=0.08)
    screen.open("/", timeout=30)
    screen.should_contain("Alice Anders")
    screen.should_contain("Cluster:")
    # pick a user
    screen.click("Alice Anders")
    screen.click("Bob Brenner")
    until(lambda: "No projects yet" in visible_text(screen))
    shot("01-user-picked")
    # create a project
    field(screen, "Project name").send_keys("Browser journey")
    screen.click("Create")
    until(lambda: "Browser journey" in visible_text(screen) and "inactive" in visible_text(screen))
    shot("02-created")
    # activate it and watch it become active
    screen.click("Activate")
    until(lambda: "Endpoint:" in visible_text(screen))
    until(lambda: "active" in visible_text(screen).split())
    shot("03-active")
    # chat: the reply streams in
    screen.click("Chat")
    until(lambda: field(screen, "Message").is_displayed())
    field(screen, "Message").send_keys("hello from the browser" + Keys.ENTER)
    until(lambda: "Hello from the" in visible_text(screen))
    partial = visible_text(screen)
    shot("04-streaming")
    until(lambda: "arrive." in visible_text(screen))
    assert "arrive." not in partial, "the reply should have been seen before it was complete"
    shot("05-reply-complete")
    # the user picked is remembered by this tab across a reload
    screen.selenium.refresh()
    until(lambda: "Browser journey" in visible_text(screen))
    assert "Bob Brenner" in visible_text(screen)
    shot("06-reloaded-same-user")
