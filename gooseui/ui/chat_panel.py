"""The chat with a project's agent: history, a streaming reply rendered in batches, tools, Stop.

A reply can bring thousands of deltas; re-rendering Markdown for each would stall the event
loop. Deltas are buffered and the Markdown is rendered at most ten times a second. The view
follows the reply while the operator is at the bottom, and stops following once they
scroll up (a "Jump to latest" button brings them back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import background_tasks, ui
from nicegui.events import ScrollEventArguments

from gooseui.chat import event_payload, split_events
from gooseui.errors import GooseUIError
from gooseui.logs import bind_request_id, log
from gooseui.models import Project
from gooseui.service import ProjectService
from gooseui.ui.markdown import AgentMarkdown
from gooseui.ui.projects import notify_error

logger = logging.getLogger("gooseui.ui.chat")

# Seconds between Markdown renders of a streaming reply: at most ten a second. The variable
# exists for bench/ui_stream.py, which compares against rendering every delta (0).
RENDER_INTERVAL = float(os.environ.get("GOOSEUI_UI_RENDER_INTERVAL", "0.1"))
SCROLLED_UP_PX = 24  # a move up by more than this is the operator reading back


class ChatPanel:
    """Chat with the agent of one project."""

    def __init__(self, service: ProjectService) -> None:
        self.service = service
        self.project: Project | None = None
        self.task: asyncio.Task[None] | None = None
        self.renders = 0
        self.following = True
        self._position = 0.0
        self._waking = False  # a message sent to a stopped project is starting it
        # called after each reply (the page reads the project again: its idle clock moved)
        self.on_reply_end: Callable[[], Awaitable[None]] | None = None
        self._progress: ui.label | None = None
        with ui.column().classes("w-full h-full gap-2 no-wrap").mark("chat-panel") as self.card:
            with ui.row().classes("w-full items-center justify-between"):
                self.title = ui.label("Chat").classes("text-lg font-medium")
                self.new_button = (
                    ui.button(
                        "New conversation", icon="add_comment", on_click=self.new_conversation
                    )
                    .props("flat no-caps")
                    .mark("new-conversation")
                )
            self.inactive = ui.row().classes("items-center gap-2")
            with ui.element("div").classes("relative w-full grow min-h-0"):
                self.scroll = (
                    ui.scroll_area(on_scroll=self._scrolled)
                    .classes("w-full h-full border rounded bg-white")
                    .mark("chat-scroll")
                )
                with self.scroll:
                    self.messages = ui.column().classes("w-full gap-2 p-2").mark("messages")
                self.jump = (
                    ui.button("Jump to latest", icon="arrow_downward", on_click=self._jump)
                    .props("rounded dense no-caps")
                    .classes("absolute bottom-2 right-4")
                    .mark("jump")
                )
                self.jump.set_visibility(False)
            with ui.row().classes("w-full items-end no-wrap gap-2") as self.composer:
                self.input = (
                    ui.textarea("Message")
                    .props("autogrow outlined dense rows=1")
                    .classes("grow")
                    .mark("message")
                )
                # Enter sends; Shift+Enter (any modifier) is left to the textarea: a new line
                self.input.on("keydown.enter.exact.prevent", self.send)
                self.send_button = ui.button(icon="send", on_click=self.send).mark("send")
                self.send_button._props["aria-label"] = "Send"
                self.stop_button = (
                    ui.button("Stop", icon="stop_circle", on_click=self.stop)
                    .props("color=negative no-caps")
                    .mark("stop")
                )
                self.stop_button.set_visibility(False)
            self.hint = ui.label("Enter sends · Shift+Enter adds a line").classes(
                "text-xs text-gray-600"
            )

    @property
    def streaming(self) -> bool:
        return self.task is not None

    async def open(self, project: Project) -> None:
        """Show `project`'s conversation: render now, load the history after."""
        if self.task is not None:
            self.stop()  # reopening clears the messages, the streaming reply among them
        self.project = project
        self.title.set_text(f"Chat — {project.name}")
        self.messages.clear()
        self.inactive.clear()
        self._controls()
        if not project.status.can_chat:
            with self.inactive:
                wake = " or send a message to start it" if project.status.can_activate else ""
                ui.label(
                    f"Project {project.name!r} is {project.status}; activate it{wake} to chat."
                ).mark("chat-inactive")
                if project.status.can_activate:
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
                self._message(message.get("role", ""), _text(message.get("content", "")))
                # the tool calls and errors of the reply to it, which the console kept
                tools: dict[str, ui.column] = {}
                for event in message.get("events") or []:
                    self._event(event, [], tools)
        self.following = True
        self._follow()

    async def refresh(self, project: Project) -> None:
        """The project changed elsewhere: an end to the chat when it can no longer chat."""
        if self.project is None or project.project_id != self.project.project_id:
            return
        was = self.project.status
        self.project = project
        if project.status == was:
            return
        if self._waking:
            return  # this chat's own message is starting it: its stream says how it goes
        if not project.status.can_chat:
            self.stop()
        if self.task is None:
            await self.open(project)

    def _controls(self) -> None:
        """What can be done in the chat as the project is now: send (to a stopped project,
        "Start and send"), or nothing while it changes."""
        status = self.project.status if self.project else None
        chat = bool(status and status.can_chat)
        wake = bool(status and status.can_activate)
        for element in (self.composer, self.hint):
            element.set_visibility(chat or wake)
        self.new_button.set_visibility(chat)
        self.send_button.set_text("" if chat else "Start and send")
        self.send_button._props["aria-label"] = "Send" if chat else "Start the project and send"
        self.send_button.update()

    def close(self, why: str) -> None:
        """The project is gone: nothing more can be sent."""
        self.stop()
        self.composer.set_visibility(False)
        self.new_button.set_visibility(False)
        self.hint.set_visibility(False)
        self.inactive.clear()
        with self.inactive:
            ui.label(why).classes("text-red-700").mark("chat-closed")

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
                    "bg-blue-50 rounded px-3 py-2 whitespace-pre-wrap max-w-[85%] break-words"
                )
        return AgentMarkdown(content).classes("w-full overflow-x-auto break-words")

    # following the reply ------------------------------------------------------------

    def _scrolled(self, event: ScrollEventArguments) -> None:
        at_bottom = (
            event.vertical_size <= event.vertical_container_size
            or event.vertical_position + event.vertical_container_size
            >= event.vertical_size - SCROLLED_UP_PX
        )
        if at_bottom:
            self.following = True
            self.jump.set_visibility(False)
        elif event.vertical_position < self._position - SCROLLED_UP_PX:
            self.following = False  # the operator scrolled up to read
        self._position = event.vertical_position

    def _follow(self) -> None:
        """After new content: to the bottom if following, else offer the way there."""
        if self.following:
            self._to_end()
        else:
            self.jump.set_visibility(True)

    def _to_end(self) -> None:
        """Scroll to the bottom once the browser has laid out what came with this update.

        A scroll run as the content arrives goes to the bottom the content had before it
        (the page applies content on its next tick), and a percentage is of the size
        Quasar last measured, which trails the content: so, on the next frame, a position
        past any end, which the browser clamps to the real one."""
        if not self.scroll.is_deleted:
            self.scroll.client.run_javascript(
                f"requestAnimationFrame(() => runMethod({self.scroll.id}, "
                "'setScrollPosition', ['vertical', Number.MAX_SAFE_INTEGER, 0]))"
            )

    def _jump(self) -> None:
        self.following = True
        self.jump.set_visibility(False)
        self._to_end()

    # sending ------------------------------------------------------------------------

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
        wake = not project.status.can_chat
        try:
            reply = await self.service.send_message(
                project.user_id, project.project_id, text, activate=wake
            )
        except GooseUIError as exc:
            self.input.error = exc.detail
            return
        self._waking = wake
        if wake:
            self.inactive.clear()
        self.input.error = None
        self.input.set_value("")
        with self.messages:
            self._message("user", text)
            if wake:  # above the reply: the project starts first
                self._progress = ui.label("Starting the project…").classes("text-sm text-gray-700")
                self._progress.mark("waking")
        self.following = True  # sending means reading the answer
        self._follow()
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
            answer = AgentMarkdown("").classes("w-full overflow-x-auto break-words").mark("reply")
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
                self._follow()

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
                    "text-sm text-gray-600"
                ).mark("stopped")
            self._follow()
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
            self._waking = False
            self._progress = None
            if self.on_reply_end is not None:
                background_tasks.create(self.on_reply_end(), name="after a reply")
            self.stop_button.set_visibility(False)
            self.send_button.set_enabled(True)
            self._controls()

    def _event(self, payload: dict[str, Any], text: list[str], tools: dict[str, ui.column]) -> None:
        kind = payload.get("type")
        content = payload.get("content") or {}
        if kind == "message":
            text.append(str(content.get("content", "")))
        elif kind == "activation":  # a stopped project starting for this message
            if self._progress is not None:
                self._progress.set_text(f"Starting the project: {content.get('message', '')}")
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
            self._follow()
        elif kind == "tool_response":
            column = tools.get(str(content.get("id")))
            if column is not None:
                with column:
                    ui.label("Result" + (" (error)" if content.get("is_error") else ""))
                    ui.code(json.dumps(content.get("result"), indent=2), language="json")
        elif kind == "error":
            message = content.get("message") or content.get("error") or "The agent failed."
            with self.messages:
                ui.label(f"Error: {message}").classes("text-red-700").mark("chat-error")
            self._follow()


def _text(content: Any) -> str:
    """A history message's text: a string, or the text parts of a list of contents."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)
