"""A project's own page: status and endpoint, what to do about a failure, the steps of its
last transition, and its chat, log and cluster events at full size.

Its address (`/ui/users/{uid}/projects/{pid}`) can be pasted into a fresh browser: the page
reads everything it shows from the service layer, nothing from the tab that linked to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from nicegui import background_tasks, context, ui

from gooseui.errors import GooseUIError, NotFound
from gooseui.events import ProjectEvent
from gooseui.logs import bind_request_id
from gooseui.models import Project, Status, Step
from gooseui.remedies import remedy_for
from gooseui.service import ProjectService
from gooseui.ui.chat_panel import ChatPanel
from gooseui.ui.diagnostics_panel import EventsPanel, LogsPanel
from gooseui.ui.layout import duration, frame, runtime, show_status, status_badge, when
from gooseui.ui.projects import (
    SETTLED,
    aria,
    confirm,
    delete_with_confirmation,
    idle_note,
    notify_error,
    rename_dialog,
    run_action,
)
from gooseui.ui.users import page_user

TABS = ("chat", "logs", "events")
TIMELINE_STEPS = 100
# steps that change the project's objects in the cluster: their events are worth reloading
CLUSTER_STEPS = {
    Step.APPLY,
    Step.SCHEDULING,
    Step.UNSCHEDULABLE,
    Step.PULLING,
    Step.STARTING,
    Step.READY,
    Step.FAILED,
    Step.STOPPED,
}


class ProjectView:
    def __init__(self, service: ProjectService, diagnostics: object, project: Project, tab: str):
        self.service = service
        self.project = project
        self.timeline: list[ProjectEvent] = []
        pid = project.project_id
        with ui.card().classes("w-full gap-2"):
            with ui.row().classes("w-full items-center gap-3 flex-wrap"):
                self.name = ui.label(project.name).classes("text-2xl font-semibold break-all")
                self.name.mark("project-name-title")
                self.badge = status_badge(project.status, f"status-{pid}")
                ui.label(pid).classes("text-sm font-mono text-gray-600")
            with ui.row().classes("w-full items-center gap-2 text-sm text-gray-700 flex-wrap"):
                self.endpoint = ui.label().classes("font-mono break-all").mark("endpoint")
                self.copy = ui.button(icon="content_copy", on_click=self._copy).props(
                    "flat dense round size=sm"
                )
                aria(self.copy, "Copy the endpoint")
                self.copy.mark("copy-endpoint")
                self.times = ui.label().classes("text-gray-600")
                self.idle = ui.label().classes("text-gray-700").mark("idle-note")
                self.model = ui.label().classes("text-gray-700").mark("model")
                edit = ui.button(icon="tune", on_click=self._edit_model).props(
                    "flat dense round size=sm"
                )
                aria(edit, "Change the agent's model").mark("edit-model")
            with ui.row().classes("w-full items-center gap-2 flex-wrap"):
                self.activate = ui.button(icon="play_arrow", on_click=self._activate).props(
                    "no-caps"
                )
                self.activate.mark(f"activate-{pid}")
                self.cancel = ui.button(icon="cancel", on_click=self._deactivate).props(
                    "outline no-caps"
                )
                self.cancel.mark(f"cancel-{pid}")
                self.deactivate = ui.button(
                    "Deactivate", icon="stop", on_click=self._deactivate
                ).props("outline no-caps")
                self.deactivate.mark(f"deactivate-{pid}")
                rename = ui.button("Rename", icon="edit", on_click=self._rename).props(
                    "flat no-caps"
                )
                rename.mark(f"rename-{pid}")
                self.rename = rename
                self.delete = ui.button("Delete", icon="delete", on_click=self._delete).props(
                    "flat no-caps color=negative"
                )
                self.delete.mark(f"delete-{pid}")
                self.keep = ui.switch("Keep running", value=project.keep_running)
                self.keep.mark("keep-running").tooltip(
                    "Never stopped for being idle (GOOSEUI_IDLE_TIMEOUT)"
                )
                self.keep.on_value_change(self._keep_changed)
                self.keep.set_visibility(service.settings.idle_timeout > 0)
        with ui.card().classes("w-full gap-1 border-l-4 border-red-700").mark("failure") as card:
            self.failure_card = card
            self.failure = ui.label().classes("font-medium text-red-800 whitespace-pre-wrap")
            self.failure.mark(f"failure-{pid}")
            self.remedy = ui.label().classes("text-sm text-gray-800").mark("remedy")
            self.remedy_link = ui.button(on_click=self._see).props("flat dense no-caps")
            self.remedy_link.mark("remedy-link")
        # open while something happens or has gone wrong; the chat has the room otherwise
        opened = project.status.in_transition or project.status == Status.FAILED
        with ui.expansion("Progress", icon="timeline", value=opened).classes(
            "w-full bg-white rounded"
        ) as self.progress_box:
            self.steps = ui.column().classes("w-full gap-0").mark("timeline")
        with ui.tabs().classes("w-full") as self.tabs:
            ui.tab("chat", "Chat", icon="chat").mark("tab-chat")
            ui.tab("logs", "Log", icon="article").mark("tab-logs")
            ui.tab("events", "Cluster events", icon="event_note").mark("tab-events")
        self.tabs.set_value(tab if tab in TABS else "chat")
        with ui.tab_panels(self.tabs, value=self.tabs.value).classes("w-full bg-transparent"):
            with ui.tab_panel("chat").classes("p-0"):
                # full height: the chat fills what the viewport leaves below the header
                with ui.column().classes("w-full h-[calc(100vh-9rem)] min-h-[26rem] no-wrap"):
                    self.chat = ChatPanel(service)
            with ui.tab_panel("logs").classes("p-0"):
                self.logs = LogsPanel(diagnostics, project)
            with ui.tab_panel("events").classes("p-0"):
                self.events = EventsPanel(diagnostics, project)
        self.tabs.on_value_change(self._tab_changed)
        self.chat.on_reply_end = self._read_again
        ui.timer(1.0, self._tick)
        self.show(project)

    # showing ------------------------------------------------------------------------

    def show(self, project: Project) -> None:
        self.project = project
        self.logs.project = project
        self.events.project = project
        status = project.status
        name = project.name
        ui.page_title(f"{name} — gooseui")
        self.name.set_text(name)
        show_status(self.badge, status)
        self.endpoint.set_text(f"Endpoint: {project.endpoint}" if project.endpoint else "")
        self.copy.set_visibility(bool(project.endpoint))
        self.model.set_text(
            f"Model: {project.model}" if project.model else "Model: the agent environment's"
        )
        self.times.set_text(
            f"Last activated: {when(project.last_activated_at)} · "
            f"created {when(project.created_at)}"
        )
        start = "Retry" if status == Status.FAILED else "Activate"
        self.activate.set_text(start)
        self.activate.set_visibility(status.can_activate)
        self.cancel.set_visibility(status == Status.ACTIVATING)
        self.deactivate.set_visibility(
            (status.can_deactivate and status != Status.ACTIVATING) or status == Status.DEACTIVATING
        )
        self.deactivate.props(
            add="loading" if status == Status.DEACTIVATING else None,
            remove=None if status == Status.DEACTIVATING else "loading",
        )
        self.deactivate.set_enabled(status != Status.DEACTIVATING)
        self.delete.set_enabled(status.can_delete)
        if bool(self.keep.value) != project.keep_running:
            self.keep.set_value(project.keep_running)
        for element, label in (
            (self.activate, f"{start} {name}"),
            (self.cancel, f"Cancel the activation of {name}"),
            (self.deactivate, f"Deactivate {name}"),
            (self.rename, f"Rename {name}"),
            (self.delete, f"Delete {name}"),
        ):
            aria(element, label)
            element.update()
        remedy = remedy_for(project.status_reason) if status == Status.FAILED else None
        self.failure_card.set_visibility(status == Status.FAILED or bool(project.status_message))
        if status == Status.FAILED:
            self.failure.set_text(f"{project.status_reason}: {project.status_message}")
        else:
            self.failure.set_text(project.status_message or "")
        self.failure_card.classes(
            replace="w-full gap-1 border-l-4 "
            + ("border-red-700" if status == Status.FAILED else "border-gray-400")
        )
        self.remedy.set_visibility(remedy is not None)
        self.remedy_link.set_visibility(bool(remedy and remedy.see))
        if remedy is not None:
            self.remedy.set_text(f"What to do: {remedy.text}")
            self.remedy_link.set_text(
                {
                    "logs": "Show the container's log",
                    "previous-logs": "Show the previous container's log",
                    "events": "Show the cluster events",
                    "quota": "Show the quota in the cluster events",
                }.get(remedy.see or "", "")
            )
        self._tick()

    def show_timeline(self, events: list[ProjectEvent]) -> None:
        self.timeline = list(events)
        self._render_steps()

    def _render_steps(self) -> None:
        self.steps.clear()
        if not self.timeline:
            with self.steps:
                ui.label("No transition yet.").classes("text-sm text-gray-600")
            return
        first = self.timeline[0].at
        with self.steps:
            for event in self.timeline:
                failed = event.step == Step.FAILED
                with (
                    ui.row()
                    .classes("w-full gap-x-3 gap-y-0 text-sm py-0.5 flex-wrap sm:flex-nowrap")
                    .mark("timeline-step")
                ):
                    ui.label(event.at.strftime("%H:%M:%S")).classes("font-mono text-gray-600")
                    ui.label(f"+{(event.at - first).total_seconds():.1f} s").classes(
                        "font-mono text-gray-600 w-20 shrink-0"
                    )
                    ui.label(event.step).classes(
                        "w-28 shrink-0 font-medium " + ("text-red-700" if failed else "")
                    )
                    ui.label(event.message).classes(
                        "grow break-words min-w-0 basis-full sm:basis-auto"
                    )
        last = self.timeline[-1]
        took = (last.at - first).total_seconds()
        running = self.project.status.in_transition
        self.progress_box.text = (
            f"Progress — {duration(self._elapsed())} so far"
            if running
            else f"Last transition — {took:.1f} s, ended {last.at.strftime('%H:%M:%S')} UTC"
        )

    def _elapsed(self) -> float:
        if not self.timeline:
            return 0.0
        return (datetime.now(UTC) - self.timeline[0].at).total_seconds()

    async def _edit_model(self) -> None:
        p = self.project
        with ui.dialog() as dialog, ui.card().classes("w-96 max-w-full"):
            ui.label(f"The agent's model for {p.name!r}").classes("text-lg")
            ui.label(
                "Empty: the agent environment's GOOSE_MODEL. A change takes effect at the "
                "next activation."
            ).classes("text-sm")
            field = ui.input("Model", value=p.model or "").classes("w-full").mark("model-input")

            async def save() -> None:
                bind_request_id()
                try:
                    changed = await self.service.update_project(
                        p.user_id, p.project_id, model=(field.value or "").strip() or None
                    )
                except GooseUIError as exc:
                    field.error = exc.detail
                    return
                self.show(changed)
                dialog.close()

            field.on("keydown.enter", save)
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Save", on_click=save).mark("model-save")
        dialog.open()

    async def _read_again(self) -> None:
        try:
            project = await self.service.get_project(self.project.user_id, self.project.project_id)
        except GooseUIError:
            return
        if not self.name.is_deleted:
            with self.name:  # a task of its own: the page's slot, for the title
                self.show(project)

    async def _keep_changed(self) -> None:
        p = self.project
        if bool(self.keep.value) == p.keep_running:
            return
        bind_request_id()
        try:
            self.show(
                await self.service.update_project(
                    p.user_id, p.project_id, keep_running=bool(self.keep.value)
                )
            )
        except GooseUIError as exc:
            notify_error(exc)
            self.keep.set_value(p.keep_running)

    def _tick(self) -> None:
        self.idle.set_text(idle_note(self.project, self.service.settings.idle_timeout) or "")
        if self.project.status == Status.ACTIVATING:
            self.cancel.set_text(f"Cancel ({duration(self._elapsed())})")
            if self.timeline:
                self.progress_box.text = f"Progress — {duration(self._elapsed())} so far"
        else:
            self.cancel.set_text("Cancel")

    # events -------------------------------------------------------------------------

    async def handle(self, event: ProjectEvent) -> None:
        # the snapshot the page was built from may hold this very event already
        seen = any(step is event for step in self.timeline[-TIMELINE_STEPS:])
        metadata = (Step.CURRENT, Step.RENAMED, Step.CREATED, Step.CHANGED)
        if event.step not in metadata and not seen:
            if event.step in (Step.START, Step.REPAIR):
                self.timeline = []
            if len(self.timeline) < TIMELINE_STEPS:
                self.timeline.append(event)
            self._render_steps()
        if event.step in CLUSTER_STEPS and self.tabs.value == "events":
            self.events.soon()
        if (
            event.step in SETTLED
            or event.step == Step.CURRENT
            or event.status != str(self.project.status)
        ):
            try:
                project = await self.service.get_project(event.user_id, event.project_id)
            except GooseUIError:
                return
            self.show(project)
            if self.timeline:
                self._render_steps()
            await self.chat.refresh(project)

    def deleted(self) -> None:
        show_status(self.badge, Status.DELETING)
        self.badge.set_text("deleted")
        for button in (self.activate, self.cancel, self.deactivate, self.rename, self.delete):
            button.set_visibility(False)
        self.chat.close("This project has been deleted.")
        self.logs.stop()
        self.failure_card.set_visibility(True)
        self.failure.set_text("This project has been deleted.")
        self.remedy.set_visibility(False)
        self.remedy_link.set_visibility(False)

    # actions ------------------------------------------------------------------------

    async def _activate(self) -> None:
        p = self.project
        await run_action(self.service.activate(p.user_id, p.project_id, wait=False))

    async def _deactivate(self) -> None:
        p = self.project
        if self.chat.streaming and not await confirm(
            f"Deactivate {p.name!r}?",
            "A reply is still streaming: stopping the environment ends it.",
            "Deactivate",
            "deactivate",
        ):
            return
        await run_action(self.service.deactivate(p.user_id, p.project_id, wait=False))

    async def _rename(self) -> None:
        renamed = await rename_dialog(self.service, self.project)
        if renamed is not None:
            self.show(renamed)

    async def _delete(self) -> None:
        await delete_with_confirmation(self.service, self.project)

    async def _copy(self) -> None:
        if self.project.endpoint:
            ui.clipboard.write(self.project.endpoint)
            ui.notify("Endpoint copied.")

    async def _see(self) -> None:
        remedy = remedy_for(self.project.status_reason)
        if remedy is None:
            return
        if remedy.see in ("logs", "previous-logs"):
            self.tabs.set_value("logs")
            if remedy.see == "previous-logs":
                await self.logs.show_previous()
            else:
                await self.logs.load()
        else:
            self.tabs.set_value("events")
            await self.events.load()

    async def _tab_changed(self) -> None:
        if self.tabs.value == "logs":
            await self.logs.load()
        elif self.tabs.value == "events":
            await self.events.load()


def page(user_id: str, project_id: str, tab: str = "chat") -> None:
    """Render the frame at once; the project, its timeline and live events load after."""
    rt = runtime()
    service = rt.service
    user = page_user(user_id)
    if user is None:
        return
    client = context.client
    with frame(user.name, crumbs=[(user.name, f"/ui/users/{user_id}"), (project_id, None)]):
        body = ui.column().classes("w-full gap-4")
        with body:
            ui.label("Loading…").classes("text-gray-600")

    async def live() -> None:
        with body:
            try:
                async with service.progress(user_id, project_id) as events:
                    await show(events)
            except NotFound as exc:
                body.clear()
                with body:
                    ui.label(exc.detail).classes("text-lg").mark("not-found")
                    ui.link(f"All projects of {user.name}", f"/ui/users/{user_id}")
                return
            except GooseUIError as exc:
                body.clear()
                with body:
                    ui.label(exc.detail).classes("text-red-700").mark("load-error")
                return

    async def show(events: AsyncIterator[ProjectEvent | None]) -> None:
        """Subscribed first; then the page is built from the project as it is now."""
        project = await service.get_project(user_id, project_id)
        body.clear()
        with body:
            view = ProjectView(service, rt.diagnostics, project, tab)
        client.on_delete(view.chat.stop)  # handlers outlive the tab: end the reply
        client.on_delete(view.logs.stop)
        view.show_timeline(await service.timeline(user_id, project_id))
        await view.chat.open(project)
        if view.tabs.value != "chat":
            await view._tab_changed()
        async for event in events:
            if event is not None:
                await view.handle(event)
        view.deleted()

    task = background_tasks.create(live(), name="project page live updates")
    client.on_delete(task.cancel)
