"""An in-process bus of project progress and status events.

The UI and `GET …/events` subscribe; the lifecycle publishes. Subscribers get bounded
queues: a slow consumer loses its oldest events rather than holding up the publisher, and
since every event carries the project's status, the newest one is always enough to catch up.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gooseui.models import Status, Step

QUEUE_SIZE = 256
TIMELINE_STEPS = 100  # per transition; an activation has about ten
TIMELINE_PROJECTS = 5000  # the projects whose last transition is held (least recent go first)


@dataclass(frozen=True)
class ProjectEvent:
    """`{project_id, status, step, message, at}` of DESIGN section 4, plus who and why."""

    user_id: str
    project_id: str
    status: str
    step: str
    message: str
    reason: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat().replace("+00:00", "Z")
        return data


class Timelines:
    """The steps of each project's current or last transition, as this process saw them.

    Held in memory, bounded; the lifecycle also stores a transition's steps with its last
    write, so a reload, another replica or a restart shows them too.
    """

    def __init__(self) -> None:
        self._steps: OrderedDict[tuple[str, str], list[ProjectEvent]] = OrderedDict()

    def record(self, event: ProjectEvent) -> None:
        key = (event.user_id, event.project_id)
        if event.step == Step.DELETED:
            self._steps.pop(key, None)
            return
        if event.step in (Step.RENAMED, Step.CREATED, Step.CHANGED):
            return  # metadata, not a step of a transition
        begins = event.step in (Step.START, Step.REPAIR)
        if begins or key not in self._steps:
            if not begins and not _in_transition(event.status):
                return  # no transition under way to add it to
            self._steps[key] = []
        steps = self._steps[key]
        self._steps.move_to_end(key)
        if len(steps) < TIMELINE_STEPS:
            steps.append(event)
        while len(self._steps) > TIMELINE_PROJECTS:
            self._steps.popitem(last=False)

    def of(self, user_id: str, project_id: str) -> list[ProjectEvent]:
        return list(self._steps.get((user_id, project_id), ()))


def _in_transition(status: str) -> bool:
    return status in Status.__members__.values() and Status(status).in_transition


class EventBus:
    """Fan-out of `ProjectEvent`s to any number of subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.Queue[ProjectEvent], str | None, str | None]] = set()
        # where this replica's own events go besides its subscribers (see gooseui.fanout)
        self.forward: Callable[[ProjectEvent], None] | None = None
        self.timelines = Timelines()

    def publish(self, event: ProjectEvent) -> None:
        """An event of this process: to its subscribers, and to the other replicas."""
        self.deliver(event)
        if self.forward is not None:
            self.forward(event)

    def deliver(self, event: ProjectEvent) -> None:
        """An event to this process's subscribers only (one from another replica, say)."""
        if event.step != Step.CURRENT:
            self.timelines.record(event)
        for queue, user_id, project_id in list(self._subscribers):
            if user_id is not None and user_id != event.user_id:
                continue
            if project_id is not None and project_id != event.project_id:
                continue
            if queue.full():
                queue.get_nowait()  # drop the oldest: the newest carries the current status
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(
        self, user_id: str | None = None, project_id: str | None = None
    ) -> AsyncIterator[asyncio.Queue[ProjectEvent]]:
        """A queue of the events of one project, one user, or everything."""
        queue: asyncio.Queue[ProjectEvent] = asyncio.Queue(QUEUE_SIZE)
        entry = (queue, user_id, project_id)
        self._subscribers.add(entry)
        try:
            yield queue
        finally:
            self._subscribers.discard(entry)
