"""An in-process bus of project progress and status events.

The UI and `GET …/events` subscribe; the lifecycle publishes. Subscribers get bounded
queues: a slow consumer loses its oldest events rather than holding up the publisher, and
since every event carries the project's status, the newest one is always enough to catch up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

QUEUE_SIZE = 256


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


class EventBus:
    """Fan-out of `ProjectEvent`s to any number of subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.Queue[ProjectEvent], str | None, str | None]] = set()
        # where this replica's own events go besides its subscribers (see gooseui.fanout)
        self.forward: Callable[[ProjectEvent], None] | None = None

    def publish(self, event: ProjectEvent) -> None:
        """An event of this process: to its subscribers, and to the other replicas."""
        self.deliver(event)
        if self.forward is not None:
            self.forward(event)

    def deliver(self, event: ProjectEvent) -> None:
        """An event to this process's subscribers only (one from another replica, say)."""
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
