"""Why an environment fails, seen from the page: the agent's log and the cluster's events.

Both come redacted from the service layer (`gooseui.diagnostics`): the real agent logs its
provider key and its MongoDB URL at start.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nicegui import background_tasks, ui

from gooseui.errors import GooseUIError
from gooseui.logs import bind_request_id
from gooseui.models import Project

LINES_AT_ONCE = 100
TAILS = {100: "last 100 lines", 500: "last 500 lines", 2000: "last 2000 lines"}


class LogsPanel:
    """The agent container's log: a tail, the previous container, or followed live."""

    def __init__(self, diagnostics: Any, project: Project) -> None:
        self.diagnostics = diagnostics
        self.project = project
        self.follower: asyncio.Task[None] | None = None
        self._quiet = False  # a switch set by the panel itself, not by the operator
        with ui.column().classes("w-full gap-2").mark("logs-panel"):
            with ui.row().classes("w-full items-center gap-3"):
                self.tail = ui.select(TAILS, value=100, label="Show")
                self.tail.props("dense outlined").classes("w-44")
                self.previous = ui.switch("Previous container").mark("logs-previous")
                self.follow = ui.switch("Follow").mark("logs-follow")
                ui.button("Refresh", icon="refresh", on_click=self.load).props(
                    "flat dense no-caps"
                ).mark("logs-refresh")
            self.note = ui.label().classes("text-sm text-gray-700").mark("logs-note")
            self.output = (
                ui.log(max_lines=5000)
                .classes("w-full h-96 font-mono text-xs bg-gray-900 text-gray-100")
                .mark("logs")
            )
        self.tail.on_value_change(self.load)
        self.previous.on_value_change(self._previous_changed)
        self.follow.on_value_change(self._follow_changed)

    async def load(self) -> None:
        """Read the tail again (of the previous container when asked)."""
        bind_request_id()
        self.stop()
        self.follow.set_value(False)
        try:
            lines = await self.diagnostics.logs(
                self.project, tail=int(self.tail.value or 100), previous=bool(self.previous.value)
            )
        except GooseUIError as exc:
            self.output.clear()
            self.note.set_text(exc.detail)
            return
        self.output.clear()
        which = "previous container" if lines.previous else "container"
        restarts = f", restarted {lines.restarts} time(s)" if lines.restarts else ""
        self.note.set_text(f"Pod {lines.pod}, {which}{restarts}: {len(lines.lines)} line(s)")
        # a line is an element to NiceGUI (about 0.3 ms): a few hundred at a time, so that a
        # long tail does not hold the event loop
        for start in range(0, len(lines.lines), LINES_AT_ONCE):
            if start:
                await asyncio.sleep(0)
            self.output.push("\n".join(lines.lines[start : start + LINES_AT_ONCE]))

    async def show_previous(self) -> None:
        self.previous.set_value(True)  # loads through its handler

    async def _previous_changed(self) -> None:
        if not self._quiet:
            await self.load()

    async def _follow_changed(self) -> None:
        if not self.follow.value:
            self.stop()
            return
        if self.follower is not None:
            return
        self._quiet = True
        try:
            self.previous.set_value(False)  # following is of the running container
        finally:
            self._quiet = False
        self.output.clear()
        self.note.set_text("Following the container's log…")
        self.follower = background_tasks.create(self._follow(), name="follow logs")

    async def _follow(self) -> None:
        bind_request_id()
        try:
            async for line in self.diagnostics.follow(self.project, tail=50):
                self.output.push(line)
            self.note.set_text("The container's log ended.")
        except GooseUIError as exc:
            self.note.set_text(exc.detail)
        finally:
            if self.follower is asyncio.current_task():
                self.follower = None
                if self.follow.value:
                    self.follow.set_value(False)

    def stop(self) -> None:
        if self.follower is not None:
            self.follower.cancel()
            self.follower = None


class EventsPanel:
    """The Kubernetes events of the project's objects, newest last."""

    def __init__(self, diagnostics: Any, project: Project) -> None:
        self.diagnostics = diagnostics
        self.project = project
        self._pending = False
        self.loaded = False
        with ui.column().classes("w-full gap-2").mark("events-panel"):
            with ui.row().classes("w-full items-center gap-3"):
                ui.button("Refresh", icon="refresh", on_click=self.load).props(
                    "flat dense no-caps"
                ).mark("events-refresh")
                self.note = ui.label().classes("text-sm text-gray-700")
            self.quota = ui.column().classes("w-full gap-1").mark("quota")
            self.rows = ui.column().classes("w-full gap-0").mark("cluster-events")

    async def load(self) -> None:
        bind_request_id()
        await self._quotas()
        try:
            events = await self.diagnostics.cluster_events(self.project)
        except GooseUIError as exc:
            self.note.set_text(exc.detail)
            return
        self.loaded = True
        self.note.set_text(f"{len(events)} event(s)" if events else "No events.")
        self.rows.clear()
        with self.rows:
            for event in events:
                warning = event.type == "Warning"
                with ui.row().classes(
                    "w-full gap-x-3 gap-y-0 py-1 border-b border-gray-200 text-sm flex-wrap "
                    "sm:flex-nowrap"
                ):
                    at = event.at.strftime("%H:%M:%S") if event.at else "—"
                    ui.label(at).classes("font-mono text-gray-600 w-20 shrink-0")
                    ui.label(event.reason).classes(
                        "w-40 shrink-0 font-medium " + ("text-red-700" if warning else "")
                    )
                    ui.label(event.object).classes("font-mono text-xs text-gray-600 w-56 shrink-0")
                    count = f" (×{event.count})" if event.count > 1 else ""
                    ui.label(event.message + count).classes("grow break-words min-w-0")

    async def _quotas(self) -> None:
        """The namespace's quotas, a full one in red: what a `QuotaExceeded` is about."""
        try:
            quotas = await self.diagnostics.quotas(self.project)
        except GooseUIError:
            quotas = []  # the events say what went wrong; the quota is extra
        self.quota.clear()
        with self.quota:
            for quota in quotas:
                full = set(quota.full())
                with ui.row().classes("w-full gap-x-3 text-sm items-center flex-wrap"):
                    ui.label(f"Quota {quota.name}:").classes("font-medium")
                    for key, limit in sorted(quota.hard.items()):
                        used = quota.used.get(key, "0")
                        ui.label(f"{key} {used} of {limit}").classes(
                            "font-mono " + ("text-red-700 font-semibold" if key in full else "")
                        )

    def soon(self) -> None:
        """Load again shortly: something happened to the project's objects (only once
        shown: a page whose events nobody looked at does not list them at every step)."""
        if self._pending or not self.loaded:
            return
        self._pending = True

        async def later() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1.0)
            self._pending = False
            if not self.rows.is_deleted:
                await self.load()

        background_tasks.create(later(), name="reload cluster events")
