"""The service layer: every rule about users and projects lives here.

The REST routes and the NiceGUI pages are thin faces over `ProjectService`; neither holds
a business rule, and this module knows nothing about either of them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

from gooseui.chat import KEEPALIVE, ChatService, Reply, sse
from gooseui.config import DNS_LABEL, Settings, User
from gooseui.errors import Conflict, GooseUIError, Invalid, NotFound
from gooseui.events import EventBus, ProjectEvent
from gooseui.lifecycle import Lifecycle
from gooseui.models import MODEL_PATTERN, Project, Status, Step
from gooseui.store import DuplicateProjectId, ProjectStore, name_key, now
from gooseui.textrules import name_problem, normal_name

logger = logging.getLogger("gooseui.service")


def new_project_id() -> str:
    """Eight lowercase base32 characters: a DNS label, 40 bits of randomness."""
    return base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()


UNSET: Any = object()  # an argument not given (None is a value: "no model of its own")


def clean_model(raw: str | None) -> str | None:
    """A model name as the agent's GOOSE_MODEL takes it; `Invalid` with the rule otherwise."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not re.fullmatch(MODEL_PATTERN, raw):
        raise Invalid(
            "A model is 1 to 128 letters, digits and . _ : / @ + - (starting with a letter "
            "or digit, and not a number, true, false or null), as the provider names it.",
            code="InvalidModel",
        )
    return raw


def clean_name(raw: str) -> str:
    """Check a project name and give its stored spelling, raising `Invalid` with the reason."""
    problem = name_problem(raw) if isinstance(raw, str) else "The project name must be text."
    if problem:
        raise Invalid(problem, code="InvalidName")
    return normal_name(raw)


class WakeReply:
    """A message to a stopped project, as one stream: its activation's progress as
    `{"type":"activation","content":{"step","message"}}` events, then the agent's reply
    (`session`, the agent's events). A failed activation ends the stream with an `error`
    event whose `code` is the failure's reason; the project is then `failed` with it.

    `start()` subscribes to the project's progress and starts the activation before any
    byte is sent, so that what can be refused (no cluster, another transition) is refused
    with its HTTP status; a wake another tab started already is followed, not refused.
    """

    def __init__(
        self, service: ProjectService, project: Project, message: str, session_id: str | None
    ) -> None:
        self._service = service
        self.project = project
        self._message = message
        self._session_id = session_id
        self._reply: Reply | None = None
        self._stack = AsyncExitStack()
        self._progress: AsyncIterator[ProjectEvent | None] | None = None
        self._active = False

    async def start(self) -> WakeReply:
        uid, pid = self.project.user_id, self.project.project_id
        service = self._service
        try:
            self._progress = await self._stack.enter_async_context(
                service.progress(uid, pid, service.settings.chat_keepalive)
            )
            self._stack.push_async_callback(self._progress.aclose)  # type: ignore[attr-defined]
            current = await anext(self._progress)  # the status once subscribed: `current`
            assert current is not None
            if current.status == Status.ACTIVE:
                self._active = True
            elif current.status != Status.ACTIVATING:
                try:
                    started = await service.activate(uid, pid, wait=False)
                except Conflict as exc:
                    if exc.code != "InTransition":
                        raise
                    started = await service.get_project(uid, pid)  # another tab's wake
                self._active = started.status == Status.ACTIVE
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def events(self) -> AsyncIterator[bytes]:
        uid, pid = self.project.user_id, self.project.project_id
        failure: dict[str, str] | None = None
        try:
            if not self._active:
                async for chunk in self._activation():
                    if isinstance(chunk, dict):
                        failure = chunk
                        break
                    yield chunk
            await self._stack.aclose()  # the progress is no longer needed
            if failure is None:
                self._reply = await self._service.send_message(
                    uid, pid, self._message, self._session_id
                )
        except GooseUIError as exc:
            failure = {"message": exc.detail, "code": exc.code}
        if failure is not None:
            yield sse({"type": "error", "content": failure})
            return
        assert self._reply is not None
        async for chunk in self._reply.events():
            yield chunk

    async def _activation(self) -> AsyncIterator[bytes | dict[str, str]]:
        """The activation's progress as SSE bytes, until active; a failure as a dict."""
        assert self._progress is not None
        async for event in self._progress:
            if event is None:
                yield KEEPALIVE
            elif event.status in (Status.ACTIVATING, Status.ACTIVE):
                step = {"step": event.step, "message": event.message}
                yield sse({"type": "activation", "content": step})
                if event.status == Status.ACTIVE:
                    return
            elif event.status in (Status.DEACTIVATING, Status.INACTIVE):
                yield {"message": "The activation was cancelled.", "code": "Cancelled"}
                return
            else:  # failed, deleted
                yield {"message": event.message, "code": event.reason or "NotActive"}
                return
        yield {"message": "The project was deleted.", "code": "ProjectNotFound"}

    async def aclose(self) -> None:
        await self._stack.aclose()
        if self._reply is not None:
            await self._reply.aclose()


def _stored_event(user_id: str, project_id: str, raw: dict) -> ProjectEvent:
    at = raw.get("at")
    moment = datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else now()
    return ProjectEvent(
        user_id,
        project_id,
        str(raw.get("status", "")),
        str(raw.get("step", "")),
        str(raw.get("message", "")),
        raw.get("reason"),
        moment,
    )


class ProjectService:
    """Users and their projects."""

    def __init__(
        self,
        settings: Settings,
        store: ProjectStore,
        bus: EventBus,
        lifecycle: Lifecycle,
        chat: ChatService,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.lifecycle = lifecycle
        self.chat = chat
        self._users = {user.id: user for user in settings.user_list()}

    def _announce(self, project: Project, step: Step, message: str) -> None:
        self.bus.publish(
            ProjectEvent(project.user_id, project.project_id, str(project.status), step, message)
        )

    # users -----------------------------------------------------------------------------

    def list_users(self) -> list[User]:
        return list(self._users.values())

    def get_user(self, user_id: str) -> User:
        user = self._users.get(user_id)
        if user is None:
            raise NotFound(f"There is no user {user_id!r}.", code="UserNotFound")
        return user

    # projects --------------------------------------------------------------------------

    def namespace_for(self, user_id: str) -> str:
        return f"{self.settings.namespace_prefix}{user_id}"

    async def list_projects(self, user_id: str) -> list[Project]:
        """The user's projects, newest first."""
        self.get_user(user_id)
        return [Project.from_document(doc) for doc in await self.store.list(user_id)]

    async def get_project(self, user_id: str, project_id: str) -> Project:
        self.get_user(user_id)
        doc = None
        if DNS_LABEL.match(project_id):
            doc = await self.store.get(user_id, project_id)
        if doc is None:
            raise NotFound(
                f"User {user_id!r} has no project {project_id!r}.", code="ProjectNotFound"
            )
        return Project.from_document(doc)

    async def create_project(self, user_id: str, name: str, model: str | None = None) -> Project:
        """Record a new, inactive project; no cluster call is made."""
        self.get_user(user_id)
        name = clean_name(name)
        for _attempt in range(3):
            project_id = new_project_id()
            moment = now()
            doc = {
                "user_id": user_id,
                "project_id": project_id,
                "name": name,
                "name_key": name_key(name),
                "namespace": self.namespace_for(user_id),
                "deployment": f"proj-{project_id}-api",
                "service": f"proj-{project_id}-api",
                "ingress": None,
                "status": str(Status.INACTIVE),
                "status_reason": None,
                "status_message": None,
                "endpoint": None,
                "goose_session_id": None,
                "desired_replicas": 0,
                "created_at": moment,
                "updated_at": moment,
                "last_activated_at": None,
                "last_activity_at": None,
                "keep_running": False,
                "model": clean_model(model),
            }
            try:
                await self.store.insert(doc)
            except DuplicateProjectId:
                continue  # 40 random bits collided; draw again
            project = Project.from_document(doc)
            self._announce(project, Step.CREATED, f"Project {name!r} created")
            return project
        raise Conflict("Could not allocate a project id; try again.", code="DuplicateProjectId")

    async def rename_project(self, user_id: str, project_id: str, name: str) -> Project:
        """Rename; the same name again is fine, a name another project has is not."""
        current = await self.get_project(user_id, project_id)
        name = clean_name(name)
        doc = await self.store.rename(user_id, project_id, name, forbidden=[Status.DELETING])
        if doc is None:
            await self.get_project(user_id, project_id)  # NotFound if it went away meanwhile
            raise Conflict(f"Project {current.name!r} is being deleted.", code="InTransition")
        project = Project.from_document(doc)
        self._announce(project, Step.RENAMED, f"Renamed to {name!r}")
        return project

    async def update_project(
        self,
        user_id: str,
        project_id: str,
        name: str | None = None,
        keep_running: bool | None = None,
        model: str | None = UNSET,
    ) -> Project:
        """Change what is given, in one write; leave the rest."""
        project = await self.get_project(user_id, project_id)
        fields: dict[str, Any] = {}
        if model is not UNSET and clean_model(model) != project.model:
            fields["model"] = model
        if keep_running is not None and keep_running != project.keep_running:
            fields["keep_running"] = keep_running
            if not keep_running:
                fields["last_activity_at"] = now()  # its idle clock starts now, not long ago
        if name is not None:
            name = clean_name(name)
            doc = await self.store.rename(
                user_id, project_id, name, forbidden=[Status.DELETING], extra=fields
            )
        elif fields:
            doc = await self.store.set_fields(user_id, project_id, fields)
        else:
            return project
        if doc is None:
            await self.get_project(user_id, project_id)  # NotFound if it went meanwhile
            raise Conflict(f"Project {project.name!r} is being deleted.", code="InTransition")
        changed = Project.from_document(doc)
        if name is not None:
            self._announce(changed, Step.RENAMED, f"Renamed to {name!r}")
        if fields:
            self._announce(changed, Step.CHANGED, f"Changed: {', '.join(sorted(fields))}")
        return changed

    async def delete_project(self, user_id: str, project_id: str) -> None:
        """Delete the project's cluster objects, then its record (DESIGN section 4)."""
        await self.lifecycle.delete(await self.get_project(user_id, project_id))

    async def activate(self, user_id: str, project_id: str, wait: bool = True) -> Project:
        """Start the environment; with `wait`, return once it is active (or raise why not)."""
        return await self.lifecycle.activate(await self.get_project(user_id, project_id), wait)

    async def deactivate(self, user_id: str, project_id: str, wait: bool = True) -> Project:
        """Stop the environment; an activation under way is cancelled."""
        return await self.lifecycle.deactivate(await self.get_project(user_id, project_id), wait)

    # progress --------------------------------------------------------------------------

    @asynccontextmanager
    async def progress(
        self, user_id: str, project_id: str | None = None, keepalive: float | None = None
    ) -> AsyncIterator[AsyncIterator[ProjectEvent | None]]:
        """The events of one project (or all of a user's), as they happen, from the moment
        this is entered: read what to show after entering, and no change slips between.

        For one project the first event is its status now (step `current`), and the events
        end once the project is deleted. With `keepalive`, None comes after that many
        silent seconds.
        """
        self.get_user(user_id)
        if project_id is not None:
            await self.get_project(user_id, project_id)
        async with self.bus.subscribe(user_id, project_id) as queue:
            yield self._events(queue, user_id, project_id, keepalive)

    async def _events(
        self,
        queue: asyncio.Queue[ProjectEvent],
        user_id: str,
        project_id: str | None,
        keepalive: float | None,
    ) -> AsyncIterator[ProjectEvent | None]:
        if project_id is not None:
            current = await self.get_project(user_id, project_id)
            yield ProjectEvent(
                user_id,
                project_id,
                str(current.status),
                str(Step.CURRENT),
                current.status_message or str(current.status),
                current.status_reason,
            )
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), keepalive)
            except TimeoutError:
                yield None
                continue
            yield event
            if project_id is not None and event.status == "deleted":
                return

    async def timeline(self, user_id: str, project_id: str) -> list[ProjectEvent]:
        """The steps of the project's current or last transition, oldest first.

        What this process saw of it, else what the lifecycle stored with its last write
        (the transition ran on another replica, or before a restart).
        """
        seen = self.bus.timelines.of(user_id, project_id)
        if seen and seen[0].step in (Step.START, Step.REPAIR):
            return seen
        doc = await self.store.get(user_id, project_id) if DNS_LABEL.match(project_id) else None
        if doc is None:
            await self.get_project(user_id, project_id)  # NotFound, with its reason
        raws = (doc or {}).get("timeline") or []
        stored = [_stored_event(user_id, project_id, raw) for raw in raws]
        last = stored[-1].at if stored else None
        return [*stored, *(e for e in seen if last is None or e.at > last)]

    # chat ------------------------------------------------------------------------------

    async def send_message(
        self,
        user_id: str,
        project_id: str,
        message: str,
        session_id: str | None = None,
        activate: bool = False,
    ) -> Reply | WakeReply:
        """Open the agent's reply; every check fails here, before anything streams.

        With `activate`, a project that is not active is started first: the stream then
        begins with its activation's progress (`WakeReply`). Without it, 409 `NotActive`.
        """
        ChatService.check_message(message)
        project = await self.get_project(user_id, project_id)
        if activate and (project.status.can_activate or project.status == Status.ACTIVATING):
            return await WakeReply(self, project, message, session_id).start()
        return await self.chat.send(project, message, session_id)

    async def history(self, user_id: str, project_id: str) -> dict:
        return await self.chat.history(await self.get_project(user_id, project_id))

    async def new_session(self, user_id: str, project_id: str) -> str:
        return await self.chat.new_session(await self.get_project(user_id, project_id))
