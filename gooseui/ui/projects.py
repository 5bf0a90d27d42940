"""The project list: one row of real elements per project, updated in place as events arrive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nicegui import background_tasks, ui

from gooseui.errors import GooseUIError
from gooseui.events import ProjectEvent
from gooseui.logs import bind_request_id
from gooseui.models import Project, Status
from gooseui.service import ProjectService

STATUS_COLORS = {
    Status.INACTIVE: "grey-6",
    Status.ACTIVATING: "blue",
    Status.ACTIVE: "positive",
    Status.DEACTIVATING: "blue-grey",
    Status.FAILED: "negative",
    Status.DELETING: "orange",
}


def when(moment: object) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"  # type: ignore[attr-defined]


def notify_error(exc: GooseUIError) -> None:
    ui.notify(exc.detail, type="negative", multi_line=True, close_button=True)


class ProjectRow:
    """A project's row; `show()` and `progress()` change it without rebuilding the list."""

    def __init__(
        self,
        service: ProjectService,
        project: Project,
        open_chat: Callable[[Project], Awaitable[None]],
    ) -> None:
        self.service = service
        self.project = project
        self.open_chat = open_chat
        pid = project.project_id
        with ui.card().classes("w-full").mark(f"row-{pid}") as self.card:
            with ui.row().classes("w-full items-center justify-between no-wrap gap-2"):
                with ui.column().classes("gap-0 min-w-0"):
                    self.name = ui.label().classes("text-lg font-medium").mark(f"name-{pid}")
                    ui.label(pid).classes("text-xs text-gray-500 font-mono")
                with ui.row().classes("items-center gap-1 justify-end"):
                    self.badge = ui.badge().mark(f"status-{pid}")
                    self.activate = (
                        ui.button("Activate", icon="play_arrow", on_click=self._activate)
                        .props("dense no-caps")
                        .mark(f"activate-{pid}")
                    )
                    self.deactivate = (
                        ui.button("Deactivate", icon="stop", on_click=self._deactivate)
                        .props("outline dense no-caps")
                        .mark(f"deactivate-{pid}")
                    )
                    ui.button(
                        "Chat", icon="chat", on_click=lambda: self.open_chat(self.project)
                    ).props("flat dense no-caps").mark(f"chat-{pid}")
                    ui.button("Rename", icon="edit", on_click=self._rename).props(
                        "flat dense no-caps"
                    ).mark(f"rename-{pid}")
                    ui.button("Delete", icon="delete", on_click=self._delete).props(
                        "flat dense no-caps color=negative"
                    ).mark(f"delete-{pid}")
            with ui.row().classes("w-full gap-6 text-sm text-gray-600"):
                self.endpoint = ui.label().classes("font-mono break-all")
                self.activated = ui.label()
            self.progress_label = (
                ui.label().classes("text-sm text-blue-700").mark(f"progress-{pid}")
            )
            self.failure = (
                ui.label()
                .classes("text-sm text-negative whitespace-pre-wrap")
                .mark(f"failure-{pid}")
            )
        self.show(project)

    def show(self, project: Project) -> None:
        self.project = project
        status = project.status
        busy = status.in_transition
        self.name.set_text(project.name)
        self.badge.set_text(str(status))
        self.badge.props(f"color={STATUS_COLORS[status]}")
        self.endpoint.set_text(f"Endpoint: {project.endpoint}" if project.endpoint else "")
        self.activated.set_text(f"Last activated: {when(project.last_activated_at)}")
        self.activate.set_text("Retry" if status == Status.FAILED else "Activate")
        self.activate.set_visibility(status in (Status.INACTIVE, Status.FAILED, Status.ACTIVATING))
        # a failed project may still have something running (a refused scale-down): the
        # operator can always stop it, which also clears the failure
        self.deactivate.set_visibility(
            status in (Status.ACTIVE, Status.DEACTIVATING, Status.FAILED)
        )
        for button, running in (
            (self.activate, Status.ACTIVATING),
            (self.deactivate, Status.DEACTIVATING),
        ):
            button.props(
                add="loading" if status == running else None,
                remove=None if status == running else "loading",
            )
            button.set_enabled(not busy)
        self.progress_label.set_visibility(busy)
        if status == Status.FAILED:
            self.failure.set_text(f"{project.status_reason}: {project.status_message}")
        elif project.status_message and not busy:
            self.failure.set_text(project.status_message)
        else:
            self.failure.set_text("")
        self.failure.set_visibility(bool(self.failure.text))

    def progress(self, event: ProjectEvent) -> None:
        self.progress_label.set_text(f"{event.step}: {event.message}")
        self.progress_label.set_visibility(True)

    async def _run(self, work: Awaitable[object]) -> None:
        bind_request_id()  # one id per operator action, on every log line
        try:
            await work
        except GooseUIError as exc:
            notify_error(exc)

    async def _in_card(self, work: Awaitable[object]) -> None:
        with self.card:  # a task of its own needs a slot for its notification
            await self._run(work)

    async def _activate(self) -> None:
        p = self.project
        await self._run(self.service.activate(p.user_id, p.project_id, wait=False))

    async def _deactivate(self) -> None:
        p = self.project
        await self._run(self.service.deactivate(p.user_id, p.project_id, wait=False))

    async def _rename(self) -> None:
        p = self.project
        with ui.dialog() as dialog, ui.card().classes("w-96"):
            ui.label(f"Rename {p.name!r}").classes("text-lg")
            name = ui.input("New name", value=p.name).classes("w-full").mark("rename-input")

            async def save() -> None:
                bind_request_id()  # one id per operator action, on every log line
                try:
                    renamed = await self.service.rename_project(
                        p.user_id, p.project_id, name.value or ""
                    )
                except GooseUIError as exc:
                    name.error = exc.detail
                    return
                self.show(renamed)
                dialog.close()

            name.on("keydown.enter", save)
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Save", on_click=save).mark("rename-save")
        dialog.open()

    async def _delete(self) -> None:
        p = self.project
        with ui.dialog() as dialog, ui.card().classes("w-96"):
            ui.label(f"Delete project {p.name!r}?").classes("text-lg").mark("delete-question")
            ui.label("Its environment in the cluster is removed too.").classes("text-sm")

            def confirm() -> None:
                dialog.close()
                background_tasks.create(
                    self._in_card(self.service.delete_project(p.user_id, p.project_id)),
                    name="delete project",
                )

            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Delete", on_click=confirm).props("color=negative").mark("delete-confirm")
        dialog.open()


class ProjectList:
    """The create form and the rows of the selected user's projects, newest first."""

    def __init__(
        self, service: ProjectService, open_chat: Callable[[Project], Awaitable[None]]
    ) -> None:
        self.service = service
        self.open_chat = open_chat
        self.user_id: str | None = None
        self.rows: dict[str, ProjectRow] = {}
        with ui.row().classes("w-full items-start gap-2"):
            self.name_input = ui.input("Project name").classes("w-80").mark("project-name")
            self.name_input.on("keydown.enter", self.create)
            ui.button("Create", icon="add", on_click=self.create).mark("create")
        self.container = ui.column().classes("w-full gap-2")

    async def load(self, user_id: str) -> None:
        """Show `user_id`'s projects (render first, then load: called from a task)."""
        self.user_id = user_id
        try:
            projects = await self.service.list_projects(user_id)
        except GooseUIError as exc:
            notify_error(exc)
            return
        if user_id != self.user_id:
            return  # another user was picked meanwhile
        self.container.clear()
        self.rows = {}
        with self.container:
            if not projects:
                ui.label("No projects yet: create one above.").classes("text-gray-500").mark(
                    "no-projects"
                )
            for project in projects:
                self.rows[project.project_id] = ProjectRow(self.service, project, self.open_chat)

    async def create(self) -> None:
        bind_request_id()  # one id per operator action, on every log line
        if self.user_id is None:
            return
        try:
            await self.service.create_project(self.user_id, self.name_input.value or "")
        except GooseUIError as exc:
            self.name_input.error = exc.detail
            return
        self.name_input.error = None
        self.name_input.set_value("")
        await self.load(self.user_id)

    async def handle(self, event: ProjectEvent) -> None:
        """Bring the list up to date with an event from any source."""
        if event.user_id != self.user_id:
            return
        row = self.rows.get(event.project_id)
        if event.step in ("created", "deleted") or event.status == "deleted" or row is None:
            await self.load(event.user_id)
            return
        if event.status != str(row.project.status) or event.step in (
            "ready",
            "failed",
            "stopped",
            "renamed",
            "reconciled",
        ):
            try:
                row.show(await self.service.get_project(event.user_id, event.project_id))
            except GooseUIError:
                await self.load(event.user_id)
                return
        if Status(row.project.status).in_transition:
            row.progress(event)
