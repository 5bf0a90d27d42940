"""The console page: pick a user, manage their projects, chat with an active one."""

from __future__ import annotations

from nicegui import app, background_tasks, context, ui

from gooseui.models import Project
from gooseui.ui.chat_panel import ChatPanel
from gooseui.ui.layout import frame, runtime
from gooseui.ui.projects import ProjectList


def page() -> None:
    """Render at once; projects, history and live events load in the background."""
    rt = runtime()
    service = rt.service
    users = service.list_users()
    client = context.client

    with frame("Projects"):
        report = rt.reconciliation
        if report is not None and (report.orphans or report.error):
            # what reconciliation found and left alone, for the operator to decide
            with ui.card().classes("w-full bg-amber-50").mark("reconciliation"):
                ui.label(f"Reconciliation: {report.summary()}").classes("font-medium")
                for line in [f"no project record: {o}" for o in report.orphans]:
                    ui.label(line).classes("text-sm font-mono")
        select = (
            ui.select({u.id: u.name for u in users}, value=users[0].id, label="User")
            .classes("w-64")
            .mark("user-select")
        )
        with ui.row().classes("w-full items-start no-wrap gap-4"):
            with ui.column().classes("w-3/5 gap-2"):
                chat: ChatPanel

                async def open_chat(project: Project) -> None:
                    await chat.open(project)

                projects = ProjectList(service, open_chat)
                projects.user_id = select.value
            with ui.column().classes("w-2/5"):
                chat = ChatPanel(service)

    async def pick(user_id: str) -> None:
        if chat.project is not None and chat.project.user_id != user_id:
            chat.stop()
            chat.card.set_visibility(False)
        await projects.load(user_id)

    async def on_select() -> None:
        try:
            app.storage.tab["user_id"] = select.value
        except RuntimeError:
            pass  # tab storage needs a connected tab; the choice still applies
        await pick(select.value)

    select.on_value_change(on_select)

    async def start() -> None:
        """After the page is up: the remembered user, the list, then live events."""
        async with rt.bus.subscribe() as queue:  # first, so no change slips past the load
            try:
                await client.connected(timeout=5)
                remembered = app.storage.tab.get("user_id")
            except (TimeoutError, RuntimeError):
                remembered = None
            if remembered in {u.id for u in users} and remembered != select.value:
                select.set_value(remembered)  # triggers on_select
            else:
                await pick(select.value)
            while True:
                event = await queue.get()
                await projects.handle(event)
                if chat.project and event.project_id == chat.project.project_id:
                    row = projects.rows.get(event.project_id)
                    if row is not None:
                        await chat.refresh(row.project)

    async def live() -> None:
        with client.content:  # a slot for notifications raised from this task
            await start()

    task = background_tasks.create(live(), name="console live updates")
    # NiceGUI keeps handlers running after a tab goes away: stop the stream and the feed
    client.on_delete(task.cancel)
    client.on_delete(chat.stop)
