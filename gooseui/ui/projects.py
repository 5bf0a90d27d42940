"""A user's projects: search, filter, sort and pages of compact rows, updated live.

The list holds every project of the user in memory and renders one page of rows: 500
projects cost the same to show as 25. An event changes its row in place; a change that
moves a project in or out of the view re-renders the page, at most a few times a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nicegui import background_tasks, context, ui

from gooseui.errors import GooseUIError
from gooseui.events import ProjectEvent
from gooseui.logs import bind_request_id
from gooseui.models import Project, Status, Step
from gooseui.service import ProjectService
from gooseui.ui.layout import ago, duration, show_status, status_badge

PAGE_SIZE = 25
ROWS_AT_ONCE = 3  # rows made in one go (about 25 ms); the rest of the page follows at once
RENDER_DELAY = 0.2  # seconds: changes arriving together re-render the page once
SORTS = {
    "created": "Newest first",
    "name": "Name",
    "status": "Status",
    "active": "Last active",
}
STATUS_ORDER = {s: i for i, s in enumerate(Status)}
NEVER = datetime.min.replace(tzinfo=UTC)
# a settled step carries fields an event does not (endpoint, reason): read the project again
SETTLED = {Step.READY, Step.FAILED, Step.STOPPED, Step.RENAMED, Step.CHANGED, Step.RECONCILED}


def idle_note(project: Project, timeout_minutes: float) -> str | None:
    """'stops in 12 min' for an active project the idle stop will stop; None otherwise."""
    if project.status != Status.ACTIVE or timeout_minutes <= 0:
        return None
    if project.keep_running:
        return "kept running"
    last = project.last_activity_at or project.last_activated_at
    if last is None:
        return None
    left = timeout_minutes * 60 - (datetime.now(UTC) - last).total_seconds()
    return f"stops in {duration(max(0, left))}" if left > 0 else "stopping (idle)"


def project_address(project: Project) -> str:
    return f"/ui/users/{project.user_id}/projects/{project.project_id}"


def notify_error(exc: GooseUIError) -> None:
    ui.notify(exc.detail, type="negative", multi_line=True, close_button=True)


def aria(element: ui.element, label: str) -> ui.element:
    element._props["aria-label"] = label  # set directly: a project's name may hold quotes
    return element


async def run_action(work: Awaitable[object]) -> bool:
    """An operator's action with its own correlation id; its error as a notification."""
    bind_request_id()
    try:
        await work
    except GooseUIError as exc:
        notify_error(exc)
        return False
    return True


def confirm(question: str, detail: str, action: str, marker: str) -> asyncio.Future[bool]:
    """A dialog asking `question`; resolves True when the operator confirms."""
    answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def close(value: bool) -> None:
        if not answer.done():
            answer.set_result(value)
        dialog.close()

    with ui.dialog() as dialog, ui.card().classes("w-96 max-w-full"):
        ui.label(question).classes("text-lg").mark(f"{marker}-question")
        ui.label(detail).classes("text-sm")
        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=lambda: close(False)).props("flat").mark(f"{marker}-no")
            ui.button(action, on_click=lambda: close(True)).props("color=negative").mark(
                f"{marker}-confirm"
            )
    dialog.on("hide", lambda: close(False))
    # a tab closed with the dialog open: the caller is not left waiting for ever
    context.client.on_delete(lambda: answer.done() or answer.set_result(False))
    dialog.open()
    return answer


async def rename_dialog(service: ProjectService, project: Project) -> Project | None:
    """Ask for a new name; the renamed project, or None when the operator gives up."""
    done: asyncio.Future[Project | None] = asyncio.get_running_loop().create_future()
    with ui.dialog() as dialog, ui.card().classes("w-96 max-w-full"):
        ui.label(f"Rename {project.name!r}").classes("text-lg")
        name = ui.input("New name", value=project.name).classes("w-full").mark("rename-input")

        async def save() -> None:
            bind_request_id()
            try:
                renamed = await service.rename_project(
                    project.user_id, project.project_id, name.value or ""
                )
            except GooseUIError as exc:
                name.error = exc.detail
                return
            if not done.done():
                done.set_result(renamed)
            dialog.close()

        name.on("keydown.enter", save)
        with ui.row().classes("w-full justify-end"):
            ui.button("Cancel", on_click=dialog.close).props("flat")
            ui.button("Save", on_click=save).mark("rename-save")
    dialog.on("hide", lambda: done.done() or done.set_result(None))
    context.client.on_delete(lambda: done.done() or done.set_result(None))
    dialog.open()
    return await done


async def delete_with_confirmation(service: ProjectService, project: Project) -> bool:
    """Ask, then delete; a toast says when it is gone. True once deleted."""
    running = project.status == Status.ACTIVE
    detail = (
        "Its agent is running: the conversation in progress ends, and the environment in the "
        "cluster is removed."
        if running
        else "Its environment in the cluster is removed too."
    )
    if not await confirm(f"Delete project {project.name!r}?", detail, "Delete", "delete"):
        return False
    ok = await run_action(service.delete_project(project.user_id, project.project_id))
    if ok:
        ui.notify(f"Project {project.name!r} deleted.", type="positive")
    return ok


class ProjectRow:
    """One compact line per project; `show()` changes it without rebuilding the page."""

    def __init__(self, owner: ProjectList, project: Project) -> None:
        self.owner = owner
        self.project = project
        pid = project.project_id
        with (
            ui.row()
            .classes(
                "w-full items-center gap-x-3 gap-y-1 px-3 py-2 border-b border-gray-200 "
                "hover:bg-gray-50 flex-wrap sm:flex-nowrap"
            )
            .mark(f"row-{pid}") as self.card
        ):
            with ui.column().classes("gap-0 min-w-0 grow basis-40"):
                self.name = (
                    ui.link(project.name, project_address(project))
                    .classes("font-medium text-gray-900 truncate max-w-full")
                    .mark(f"name-{pid}")
                )
                ui.label(pid).classes("text-xs text-gray-600 font-mono")
            self.badge = status_badge(project.status, f"status-{pid}")
            self.age = ui.label().classes("text-sm text-gray-600 w-28 max-sm:hidden")
            self.change = ui.label().classes("text-sm text-gray-600 w-32 max-md:hidden")
            with ui.row().classes("items-center gap-1 no-wrap max-sm:hidden"):
                self.activate = ui.button(icon="play_arrow", on_click=self._activate).props(
                    "dense no-caps"
                )
                self.activate.mark(f"activate-{pid}")
                self.deactivate = ui.button(icon="stop", on_click=self._deactivate).props(
                    "outline dense no-caps"
                )
                self.deactivate.mark(f"deactivate-{pid}")
                self.chat = ui.button("Chat", icon="chat", on_click=self._open_chat).props(
                    "flat dense no-caps"
                )
                self.chat.mark(f"chat-{pid}")
                self.rename = ui.button(icon="edit", on_click=self._rename).props("flat dense")
                self.rename.mark(f"rename-{pid}")
                self.delete = ui.button(icon="delete", on_click=self._delete).props(
                    "flat dense color=negative"
                )
                self.delete.mark(f"delete-{pid}")
            # on a phone the actions fold into a menu (made when opened: most rows never
            # need theirs), so the name keeps the line
            self.more = ui.button(icon="more_vert", on_click=self._menu).props("flat dense round")
            self.more.classes("sm:hidden")
            self.failure = (
                ui.label().classes("w-full text-sm text-red-700 truncate").mark(f"failure-{pid}")
            )
        self._labelled: tuple[str, Status] | None = None
        self.show(project)

    def show(self, project: Project) -> None:
        self.project = project
        status = project.status
        name = project.name
        self.name.set_text(name)
        show_status(self.badge, status)
        self._times()
        start = "Retry" if status == Status.FAILED else "Activate"
        stop = "Cancel" if status == Status.ACTIVATING else "Deactivate"
        self.activate.set_text(start)
        self.deactivate.set_text(stop)
        self.activate.set_visibility(status.can_activate)
        self.deactivate.set_visibility(status.can_deactivate or status == Status.DEACTIVATING)
        stopping = status == Status.DEACTIVATING
        if bool(self.deactivate._props.get("loading")) != stopping:
            self.deactivate._props["loading"] = stopping
            self.deactivate.update()
        self.deactivate.set_enabled(not stopping)
        self.delete.set_enabled(status.can_delete)
        if self._labelled != (name, status):  # labels name the project and the action
            self._labelled = (name, status)
            for element, label in (
                (self.activate, f"{start} {name}"),
                (self.deactivate, f"{stop} {name}"),
                (self.chat, f"Chat with {name}"),
                (self.rename, f"Rename {name}"),
                (self.delete, f"Delete {name}"),
                (self.more, f"Actions for {name}"),
            ):
                aria(element, label)
                element.update()
        if status == Status.FAILED:
            self.failure.set_text(f"{project.status_reason}: {project.status_message}")
        elif project.status_message and not status.in_transition:
            self.failure.set_text(project.status_message)  # e.g. why an idle one stopped
        else:
            self.failure.set_text("")
        self.failure.classes(
            replace="w-full text-sm truncate "
            + ("text-red-700" if status == Status.FAILED else "text-gray-700")
        )
        self.failure.set_visibility(bool(self.failure.text))

    def _times(self) -> None:
        project = self.project
        if project.status == Status.ACTIVE and project.last_activated_at:
            self.age.set_text(f"up {ago(project.last_activated_at).removesuffix(' ago')}")
        else:
            self.age.set_text(f"created {ago(project.created_at)}")
        self.change.set_text(
            idle_note(project, self.owner.idle_timeout) or f"changed {ago(project.updated_at)}"
        )

    def _menu(self) -> None:
        """The phone's menu of this row's actions, as its status allows them now."""
        status = self.project.status
        with self.more:
            menu = ui.menu()
        with menu:
            if status.can_activate:
                label = "Retry" if status == Status.FAILED else "Activate"
                ui.menu_item(label, on_click=self._activate)
            if status == Status.ACTIVATING:
                ui.menu_item("Cancel activation", on_click=self._deactivate)
            elif status.can_deactivate:
                ui.menu_item("Deactivate", on_click=self._deactivate)
            ui.menu_item("Open", on_click=self._open_chat)
            ui.menu_item("Rename", on_click=self._rename)
            if status.can_delete:
                ui.menu_item("Delete", on_click=self._delete)
        menu.on("hide", menu.delete)
        menu.open()

    def tick(self) -> None:
        """Refresh the relative times."""
        self._times()

    async def _activate(self) -> None:
        p = self.project
        await run_action(self.owner.service.activate(p.user_id, p.project_id, wait=False))

    async def _deactivate(self) -> None:
        p = self.project
        await run_action(self.owner.service.deactivate(p.user_id, p.project_id, wait=False))

    def _open_chat(self) -> None:
        ui.navigate.to(project_address(self.project) + "#chat")

    async def _rename(self) -> None:
        with self.owner.dialogs:  # not in the row: a re-render would take the dialog along
            renamed = await rename_dialog(self.owner.service, self.project)
        if renamed is not None:
            self.owner.update(renamed)

    async def _delete(self) -> None:
        project, dialogs = self.project, self.owner.dialogs

        async def work() -> None:
            with dialogs:  # a slot that outlives the row, for the dialog and the toast
                await delete_with_confirmation(self.owner.service, project)

        background_tasks.create(work(), name="delete project")


class ProjectList:
    """The create form, the view's controls, and a page of the user's projects."""

    def __init__(
        self,
        service: ProjectService,
        user_id: str,
        query: str = "",
        status: str = "all",
        sort: str = "created",
        on_view: Callable[[dict[str, str]], None] | None = None,
        idle_timeout: float = 0.0,
    ) -> None:
        self.service = service
        self.idle_timeout = idle_timeout
        self.user_id = user_id
        self.projects: dict[str, Project] = {}
        self.rows: dict[str, ProjectRow] = {}
        self.page = 1
        self.loaded = False
        self.on_view = on_view
        self._render_pending = False
        self._generation = 0
        with ui.row().classes("w-full items-start gap-2"):
            self.name_input = (
                ui.input("Project name").classes("w-72 max-w-full").mark("project-name")
            )
            self.name_input.on("keydown.enter", self.create)
            ui.button("Create", icon="add", on_click=self.create).mark("create")
        with ui.row().classes("w-full items-center gap-2"):
            self.search = (
                ui.input("Search name or id", value=query)
                .props("clearable dense outlined debounce=150")
                .classes("w-64 max-w-full")
                .mark("search")
            )
            with self.search.add_slot("prepend"):
                ui.icon("search")
            statuses = {"all": "All statuses", **{str(s): str(s) for s in Status}}
            self.status = (
                ui.select(statuses, value=status if status in statuses else "all", label="Status")
                .props("dense outlined")
                .classes("w-40")
                .mark("status-filter")
            )
            self.sort = (
                ui.select(SORTS, value=sort if sort in SORTS else "created", label="Sort")
                .props("dense outlined")
                .classes("w-40")
                .mark("sort")
            )
            self.count = ui.label().classes("text-sm text-gray-700").mark("count")
            self.count._props["aria-live"] = "polite"
        for control in (self.search, self.status, self.sort):
            control.on_value_change(self._view_changed)
        self.container = ui.column().classes("w-full gap-0 border-t border-gray-200")
        # dialogs and toasts live here, never in a row: rows are made again at every render
        self.dialogs = ui.element("div")
        with self.container:
            ui.label("Loading projects…").classes("text-gray-600 p-3")
        self.pager = ui.pagination(1, 1, direction_links=True).mark("pager")
        self.pager.on_value_change(self._page_changed)
        self.pager.set_visibility(False)
        ui.timer(30, self._tick)

    # loading and events ------------------------------------------------------------

    async def load(self) -> None:
        """Read the user's projects and show the view (render first, then load)."""
        try:
            projects = await self.service.list_projects(self.user_id)
        except GooseUIError as exc:
            self.container.clear()
            with self.container:
                with ui.row().classes("items-center gap-2 p-3").mark("load-error"):
                    ui.label(f"The projects could not be read: {exc.detail}").classes(
                        "text-red-700"
                    )
                    ui.button("Try again", icon="refresh", on_click=self.load).props("flat")
            return
        self.projects = {p.project_id: p for p in projects}
        self.loaded = True
        self.render()

    async def handle(self, event: ProjectEvent) -> None:
        """Bring the view up to date with an event from any source."""
        if event.user_id != self.user_id or not self.loaded:
            return  # the load, when it comes, reads everything as it is then
        pid = event.project_id
        current = self.projects.get(pid)
        if event.step == Step.DELETED or event.status == "deleted":
            if self.projects.pop(pid, None) is not None:
                self._schedule()
            return
        if current is None or event.step in SETTLED:
            try:
                fresh = await self.service.get_project(event.user_id, pid)
            except GooseUIError:
                self.projects.pop(pid, None)
                self._schedule()
                return
            self.update(fresh)
            return
        if event.status != str(current.status):
            self.update(current.model_copy(update={"status": Status(event.status)}))

    def update(self, project: Project) -> None:
        before = self.projects.get(project.project_id)
        self.projects[project.project_id] = project
        if before is not None and self._keeps_place(before, project):
            row = self.rows.get(project.project_id)
            if row is not None:
                row.show(project)
            return  # off this page and staying off it: nothing to show
        self._schedule()

    def _keeps_place(self, before: Project, after: Project) -> bool:
        """Whether the change leaves the view's membership and order as they are."""
        if self._matches(before) != self._matches(after):
            return False
        if self.sort.value == "status" and before.status != after.status:
            return False
        if self.sort.value == "name" and before.name != after.name:
            return False
        return not (
            self.sort.value == "active" and before.last_activated_at != after.last_activated_at
        )

    def _schedule(self) -> None:
        if self._render_pending:
            return
        self._render_pending = True

        async def later() -> None:
            try:
                await asyncio.sleep(RENDER_DELAY)
            finally:
                self._render_pending = False
            if not self.container.is_deleted:
                self.render()

        background_tasks.create(later(), name="render project list")

    # the view ----------------------------------------------------------------------

    def _matches(self, project: Project) -> bool:
        status = self.status.value
        if status and status != "all" and str(project.status) != status:
            return False
        query = (self.search.value or "").strip().casefold()
        return not query or query in project.name.casefold() or project.project_id.startswith(query)

    def view(self) -> list[Project]:
        """The projects the controls select, in their order."""
        chosen = [p for p in self.projects.values() if self._matches(p)]
        order = self.sort.value
        if order == "name":
            chosen.sort(key=lambda p: (p.name.casefold(), p.project_id))
        elif order == "status":
            chosen.sort(key=lambda p: (STATUS_ORDER[p.status], p.name.casefold()))
        elif order == "active":
            chosen.sort(key=lambda p: p.last_activated_at or NEVER, reverse=True)
        else:
            chosen.sort(key=lambda p: (p.created_at, p.project_id), reverse=True)
        return chosen

    def render(self) -> None:
        chosen = self.view()
        pages = max(1, -(-len(chosen) // PAGE_SIZE))
        self.page = min(self.page, pages)
        shown = chosen[(self.page - 1) * PAGE_SIZE : self.page * PAGE_SIZE]
        total = len(self.projects)
        self.count.set_text(
            f"{len(chosen)} of {total}" if len(chosen) != total else f"{total} projects"
        )
        self.pager.max = pages
        self.pager.set_value(self.page)
        self.pager.set_visibility(pages > 1)
        self.container.clear()
        self.rows = {}
        with self.container:
            if not self.projects:
                ui.label("No projects yet: create one above.").classes("text-gray-600 p-3").mark(
                    "no-projects"
                )
            elif not chosen:
                ui.label("No project matches the search and filter.").classes(
                    "text-gray-600 p-3"
                ).mark("no-match")
        self._generation += 1
        self._add_rows(shown[:ROWS_AT_ONCE])
        if len(shown) > ROWS_AT_ONCE:
            background_tasks.create(
                self._add_later(self._generation, shown[ROWS_AT_ONCE:]), name="project rows"
            )

    def _add_rows(self, projects: list[Project]) -> None:
        with self.container:
            for project in projects:
                self.rows[project.project_id] = ProjectRow(self, project)

    async def _add_later(self, generation: int, projects: list[Project]) -> None:
        """The rest of the page, a few rows at a time: a row costs NiceGUI about 8 ms to
        make, and 25 at once would hold the event loop (every tab's) for 200 ms."""
        for start in range(0, len(projects), ROWS_AT_ONCE):
            await asyncio.sleep(0)
            if generation != self._generation or self.container.is_deleted:
                return  # rendered again meanwhile, or the page is gone
            batch = projects[start : start + ROWS_AT_ONCE]
            # as they are now (an event may have changed one), and not if deleted meanwhile
            chunk = [self.projects[p.project_id] for p in batch if p.project_id in self.projects]
            self._add_rows(chunk)

    def _view_changed(self) -> None:
        self.page = 1
        self.render()
        if self.on_view is not None:
            self.on_view(
                {
                    "q": (self.search.value or "").strip(),
                    "status": self.status.value or "all",
                    "sort": self.sort.value or "created",
                }
            )

    def _page_changed(self, event: Any) -> None:
        if event.value and event.value != self.page:
            self.page = int(event.value)
            self.render()

    def _tick(self) -> None:
        for row in self.rows.values():
            row.tick()

    async def create(self) -> None:
        bind_request_id()  # one id per operator action, on every log line
        try:
            project = await self.service.create_project(self.user_id, self.name_input.value or "")
        except GooseUIError as exc:
            self.name_input.error = exc.detail
            return
        self.name_input.error = None
        self.name_input.set_value("")
        self.update(project)
