"""The chat panel: history, a streaming reply rendered in batches, tools, Stop, New conversation.

A reply can bring thousands of deltas; re-rendering Markdown for each would stall the event
loop. Deltas are buffered and the Markdown is rendered at most ten times a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

from nicegui import background_tasks, ui

from gooseui.chat import event_payload, split_events
from gooseui.errors import GooseUIError
from gooseui.logs import bind_request_id, log
from gooseui.models import Project, Status
from gooseui.service import ProjectService
from gooseui.ui.markdown import AgentMarkdown
from gooseui.ui.projects import notify_error

# Seconds between Markdown renders of a streaming reply: at most ten a second. The variable
# exists for bench/ui_stream.py, which compares against rendering every delta (0).
logger = logging.getLogger("gooseui.ui.chat")

RENDER_INTERVAL = float(os.environ.get("GOOSEUI_UI_RENDER_INTERVAL", "0.1"))


class ChatPanel:
    """Chat with the agent of one project at a time."""

    def __init__(self, service: ProjectService) -> None:
        self.service = service
        self.project: Project | None = None
        self.task: asyncio.Task[None] | None = None
        self.renders = 0
        with ui.card().classes("w-full").mark("chat-panel") as self.card:
            with ui.row().classes("w-full items-center justify-between"):
                self.title = ui.label("Chat").classes("text-lg font-medium")
                self.new_button = (
                    ui.button(
                        "New conversation", icon="add_comment", on_click=self.new_conversation
                    )
                    .props("flat")
                    .mark("new-conversation")
                )
            self.inactive = ui.row().classes("items-center gap-2")
            self.messages = (
                ui.column().classes("w-full gap-2 max-h-[60vh] overflow-auto").mark("messages")
            )
            with ui.row().classes("w-full items-center no-wrap") as self.composer:
                self.input = ui.input("Message").classes("grow").mark("message")
                self.input.on("keydown.enter", self.send)
                self.send_button = ui.button("Send", icon="send", on_click=self.send).mark("send")
                self.stop_button = (
                    ui.button("Stop", icon="stop_circle", on_click=self.stop)
                    .props("color=negative")
                    .mark("stop")
                )
                self.stop_button.set_visibility(False)
        self.card.set_visibility(False)

    async def open(self, project: Project) -> None:
        """Show `project`'s conversation: render now, load the history after."""
        if self.task is not None:
            self.stop()  # reopening clears the messages, the streaming reply among them
        self.project = project
        self.card.set_visibility(True)
        self.title.set_text(f"Chat — {project.name}")
        self.messages.clear()
        self.inactive.clear()
        active = project.status == Status.ACTIVE
        self.composer.set_visibility(active)
        self.new_button.set_visibility(active)
        if not active:
            with self.inactive:
                ui.label(
                    f"Project {project.name!r} is {project.status}; activate it to chat."
                ).mark("chat-inactive")
                ui.button("Activate", icon="play_arrow", on_click=self._activate).mark(
                    "chat-activate"
                )
            return
        try:
            history = await self.service.history(project.user_id, project.project_id)
        except GooseUIError as exc:
            notify_error(exc)
            return
        with self.messages:
            for message in history.get("messages", []):
                self._message(message.get("role", ""), message.get("content", ""))

    async def refresh(self, project: Project) -> None:
        """The project changed (e.g. became active): reopen unless a reply is streaming."""
        if self.project and project.project_id == self.project.project_id and self.task is None:
            if project.status != self.project.status:
                await self.open(project)

    async def _activate(self) -> None:
        bind_request_id()  # one id per operator action, on every log line
        assert self.project is not None
        try:
            await self.service.activate(self.project.user_id, self.project.project_id, wait=False)
        except GooseUIError as exc:
            notify_error(exc)

    def _message(self, role: str, content: str) -> ui.element:
        if role.lower() == "user":
            with ui.row().classes("w-full justify-end"):
                return ui.label(content).classes(
                    "bg-blue-50 rounded px-3 py-2 whitespace-pre-wrap max-w-[80%]"
                )
        return AgentMarkdown(content).classes("w-full")

    async def new_conversation(self) -> None:
        bind_request_id()  # one id per operator action, on every log line
        if self.project is None:
            return
        self.stop()
        try:
            await self.service.new_session(self.project.user_id, self.project.project_id)
        except GooseUIError as exc:
            notify_error(exc)
            return
        self.messages.clear()
        ui.notify("A new conversation has started.")

    async def send(self) -> None:
        bind_request_id()  # one id per operator action, on every log line
        if self.project is None or self.task is not None:
            return
        text = self.input.value or ""
        project = self.project
        try:
            reply = await self.service.send_message(project.user_id, project.project_id, text)
        except GooseUIError as exc:
            self.input.error = exc.detail
            return
        self.input.error = None
        self.input.set_value("")
        with self.messages:
            self._message("user", text)
        self.task = background_tasks.create(self._in_slot(reply), name="chat stream")
        self.task.add_done_callback(lambda _: background_tasks.create(reply.aclose()))

    async def _in_slot(self, reply: Any) -> None:
        with self.card:  # a slot for whatever this task renders or notifies
            await self._stream(reply)

    def stop(self) -> None:
        """End the reply now; the upstream request is closed with it."""
        if self.task is not None:
            self.task.cancel()

    async def _stream(self, reply: Any) -> None:
        text: list[str] = []
        shown = ""
        renders_before = self.renders
        started = time.perf_counter()
        tools: dict[str, ui.column] = {}
        with self.messages:
            answer = AgentMarkdown("").classes("w-full").mark("reply")
            timer = ui.timer(RENDER_INTERVAL, lambda: flush()) if RENDER_INTERVAL else None
        self.stop_button.set_visibility(True)
        self.send_button.set_enabled(False)

        def flush() -> None:
            nonlocal shown
            current = "".join(text)
            if current != shown:
                shown = current
                answer.set_content(current)
                self.renders += 1

        try:
            async for chunk in reply.events():
                for block in split_events(chunk)[0]:
                    payload = event_payload(block)
                    if payload is not None:
                        self._event(payload, text, tools)
                if timer is None:
                    flush()
        except asyncio.CancelledError:
            flush()
            with self.messages:
                ui.label("Reply stopped. The agent does not keep a stopped reply.").classes(
                    "text-sm text-gray-500"
                ).mark("stopped")
            raise
        finally:
            if timer is not None:
                timer.cancel()
            flush()
            log(
                logger,
                "ui.reply_rendered",
                renders=self.renders - renders_before,
                chars=len(shown),
                ms=round((time.perf_counter() - started) * 1000),
            )
            self.task = None
            self.stop_button.set_visibility(False)
            self.send_button.set_enabled(True)

    def _event(self, payload: dict[str, Any], text: list[str], tools: dict[str, ui.column]) -> None:
        kind = payload.get("type")
        content = payload.get("content") or {}
        if kind == "message":
            text.append(str(content.get("content", "")))
        elif kind == "tool_request":
            with self.messages:
                with (
                    ui.expansion(f"Tool: {content.get('tool_name', '?')}", icon="build")
                    .classes("w-full bg-gray-50")
                    .mark("tool")
                ):
                    tools[str(content.get("id"))] = column = ui.column().classes("w-full")
                    with column:
                        ui.code(json.dumps(content.get("arguments", {}), indent=2), language="json")
        elif kind == "tool_response":
            column = tools.get(str(content.get("id")))
            if column is not None:
                with column:
                    ui.label("Result" + (" (error)" if content.get("is_error") else ""))
                    ui.code(json.dumps(content.get("result"), indent=2), language="json")
        elif kind == "error":
            message = content.get("message") or content.get("error") or "The agent failed."
            with self.messages:
                ui.label(f"Error: {message}").classes("text-negative").mark("chat-error")
