"""`/`, which opens the user the operator worked with last, and a page per user."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi.responses import RedirectResponse
from nicegui import app, background_tasks, context, ui

from gooseui.config import User
from gooseui.errors import NotFound
from gooseui.ui.layout import frame, runtime
from gooseui.ui.projects import ProjectList


def remember(user_id: str) -> None:
    """This browser's last user, for `/` (NiceGUI's per-browser storage, signed)."""
    try:
        app.storage.user["user_id"] = user_id
    except RuntimeError:
        pass  # no browser storage in this context: `/` opens the first user instead


def home() -> RedirectResponse:
    users = runtime().service.list_users()
    known = {user.id for user in users}
    try:
        last = app.storage.user.get("user_id")
    except RuntimeError:
        last = None
    user_id = last if last in known else users[0].id
    return RedirectResponse(f"/ui/users/{user_id}", status_code=307)


def unknown_user(user_id: str) -> None:
    users = runtime().service.list_users()
    with frame("Unknown user"):
        ui.label(f"There is no user {user_id!r}.").classes("text-lg").mark("not-found")
        for user in users:
            ui.link(user.name, f"/ui/users/{user.id}")


def page_user(user_id: str) -> User | None:
    """The user a page is about, remembered for `/`; None once the page has said there is
    no such user."""
    try:
        user = runtime().service.get_user(user_id)
    except NotFound:
        unknown_user(user_id)
        return None
    remember(user_id)
    return user


def page(user_id: str, q: str = "", status: str = "all", sort: str = "created") -> None:
    """A user's projects; the view (search, filter, sort) is in the address, so it can be
    linked. Renders at once; the projects and live events load in the background."""
    rt = runtime()
    service = rt.service
    user = page_user(user_id)
    if user is None:
        return
    ui.page_title(f"{user.name} — gooseui")
    users = service.list_users()
    client = context.client

    def address(view: dict[str, str]) -> str:
        defaults = {"q": "", "status": "all", "sort": "created"}
        query = {k: v for k, v in view.items() if v != defaults[k]}
        return f"/ui/users/{user_id}" + (f"?{urlencode(query)}" if query else "")

    with frame(user.name, crumbs=[(user.name, None)]):
        report = rt.reconciliation
        if report is not None and (report.orphans or report.error):
            # what reconciliation found and left alone, for the operator to decide
            with ui.card().classes("w-full bg-amber-50").mark("reconciliation"):
                ui.label(f"Reconciliation: {report.summary()}").classes("font-medium")
                for line in [f"no project record: {o}" for o in report.orphans]:
                    ui.label(line).classes("text-sm font-mono break-all")
        select = (
            ui.select({u.id: u.name for u in users}, value=user_id, label="User")
            .classes("w-64 max-w-full")
            .mark("user-select")
        )
        select.on_value_change(
            lambda e: e.value != user_id and ui.navigate.to(f"/ui/users/{e.value}")
        )
        projects = ProjectList(
            service,
            user_id,
            query=q,
            status=status,
            sort=sort,
            on_view=lambda view: ui.navigate.history.replace(address(view)),
            idle_timeout=rt.settings.idle_timeout,
        )

    async def live() -> None:
        # subscribed before the list is read, so no change slips between the two
        with client.content:  # a slot for notifications raised from this task
            async with service.progress(user_id) as events:
                await projects.load()
                async for event in events:
                    if event is not None:
                        await projects.handle(event)

    task = background_tasks.create(live(), name="user page live updates")
    client.on_delete(task.cancel)
