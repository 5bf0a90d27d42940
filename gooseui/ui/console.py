"""The console page: pick a user, see their projects."""

from __future__ import annotations

from nicegui import ui

from gooseui.errors import GooseUIError
from gooseui.models import Project
from gooseui.ui.layout import frame, runtime


def _project_row(project: Project) -> None:
    with ui.card().classes("w-full").mark(f"project-{project.project_id}"):
        with ui.row().classes("w-full items-center justify-between"):
            with ui.column().classes("gap-0"):
                ui.label(project.name).classes("text-lg font-medium")
                ui.label(project.project_id).classes("text-xs text-gray-500 font-mono")
            ui.badge(str(project.status)).mark("status")


def page() -> None:
    """Render at once, then load: a page builder must not wait on the database."""
    service = runtime().service
    users = service.list_users()
    shown: dict[str, list[Project] | str | None] = {"projects": None}

    with frame("Projects"):
        select = (
            ui.select({u.id: u.name for u in users}, value=users[0].id, label="User")
            .classes("w-64")
            .mark("user-select")
        )

        @ui.refreshable
        def projects() -> None:
            items = shown["projects"]
            if items is None:
                ui.spinner()
            elif isinstance(items, str):
                ui.label(items).classes("text-negative")
            elif not items:
                ui.label("No projects yet.").classes("text-gray-500")
            else:
                for project in items:
                    _project_row(project)

        async def load() -> None:
            try:
                shown["projects"] = await service.list_projects(select.value)
            except GooseUIError as exc:
                shown["projects"] = exc.detail
            projects.refresh()

        with ui.column().classes("w-full gap-2"):
            projects()
        select.on_value_change(load)
        ui.timer(0, load, once=True)
