"""The NiceGUI pages. `register()` adds them to the app; it runs on every app build."""

from __future__ import annotations

from nicegui import ui
from nicegui.elements.markdown import prepare_content

from gooseui.ui import project_page, users
from gooseui.ui.layout import LANGUAGE


def _warm_up_markdown() -> None:
    """Pay NiceGUI's one-time Markdown costs (Pygments styles, markdown2 set-up) at start.

    Otherwise the first reply of the process pays them mid-stream: a ~100 ms stall of the
    event loop, measured by bench/ui_stream.py.
    """
    ui.markdown._generate_codehilite_css()
    prepare_content("warm *up*\n\n```python\nx = 1\n```", " ".join(ui.markdown.default_extras))


def register() -> None:
    """The pages sit under `/ui/`, beside the REST routes at `/users/...` (JSON)."""
    _warm_up_markdown()
    ui.page("/", title="gooseui", language=LANGUAGE)(users.home)
    ui.page("/ui/users/{user_id}", title="gooseui", language=LANGUAGE)(users.page)
    ui.page("/ui/users/{user_id}/projects/{project_id}", title="gooseui", language=LANGUAGE)(
        project_page.page
    )
