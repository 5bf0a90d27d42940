"""A de-duplicating work queue that drives a reconcile function, as controllers use.

Store changes enqueue keys; a key queued several times before the worker gets to it
is reconciled once. No polling: the worker sleeps until a key arrives or a timer
(`add_after`) fires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    """Keys to reconcile, handled one at a time by `handler` on the running loop."""

    def __init__(self, name: str, handler: Callable[[K], None]) -> None:
        self.name = name
        self._handler = handler
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._pending: set[K] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, key: K) -> None:
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Reconcile `key` again after `delay` seconds (deadlines, back-off retries)."""
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self.add(key)

        handle = loop.call_later(max(delay, 0.0), fire)
        self._timers.add(handle)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"workqueue-{self.name}"
        )

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            try:
                self._handler(key)
            except Exception:
                log.exception("%s: reconciling %r failed", self.name, key)
            # let other tasks (HTTP handlers) run between reconciles
            await asyncio.sleep(0)
