"""The NiceGUI pages. `register()` adds them to the app; it runs on every app build."""

from __future__ import annotations

from nicegui import ui

from gooseui.ui import console


def register() -> None:
    ui.page("/", title="gooseui")(console.page)
