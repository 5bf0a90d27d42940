"""The idle stop: an active project nobody has used for GOOSEUI_IDLE_TIMEOUT minutes is
deactivated, with reason `Idle`, so that idle agents do not run (and cost) for ever.

"Used" is counted as the agent sees it, not as a timer per project: the last message, the
end of the last reply (`last_activity_at`, in MongoDB, so a restart or another replica
keeps the clock), a reply open through this replica, and the agent's own status (it may be
working on a reply a replica that went away had started). One sweep covers every project:
one query for the candidates, then one status call per candidate, never per project.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from gooseui.chat import ChatService
from gooseui.errors import GooseUIError
from gooseui.goose import GooseClient, GooseUnreachable
from gooseui.lifecycle import Lifecycle
from gooseui.logs import bind_request_id, log
from gooseui.models import Project
from gooseui.store import ProjectStore, now

logger = logging.getLogger("gooseui.idle")

IDLE_REASON = "Idle"
STATUS_CALLS = 32  # agents asked at once in a sweep (the Goose client's pool serves chat too)


def sweep_interval(timeout_minutes: float) -> float:
    """Often enough that a project stops within a sixth of its timeout, at most a minute."""
    return min(60.0, max(1.0, timeout_minutes * 60 / 6))


class IdleSweeper:
    """Stops idle projects; `start()` runs the sweeps, `close()` ends them."""

    def __init__(
        self,
        timeout_minutes: float,
        store: ProjectStore,
        lifecycle: Lifecycle,
        chat: ChatService,
        goose: GooseClient,
    ) -> None:
        self.timeout = timeout_minutes
        self.store = store
        self.lifecycle = lifecycle
        self.chat = chat
        self.goose = goose
        self._task: asyncio.Task[None] | None = None
        self._calls = asyncio.Semaphore(STATUS_CALLS)
        self.sweeps = 0

    def start(self) -> None:
        if self.timeout > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="idle sweeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        interval = sweep_interval(self.timeout)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except GooseUIError as exc:  # MongoDB away: the next sweep tries again
                log(logger, "idle.sweep_failed", logging.WARNING, error=exc.detail)
            except Exception:  # a bug must not end the sweeps for good, silently
                logger.exception("idle sweep failed")

    async def sweep(self) -> list[Project]:
        """One pass: the projects it stopped."""
        bind_request_id()  # one id for the pass's lines
        started = time.perf_counter()
        cutoff = now() - timedelta(minutes=self.timeout)
        candidates = [Project.from_document(doc) for doc in await self.store.idle_since(cutoff)]
        stopped = [p for p in await asyncio.gather(*map(self._check, candidates)) if p]
        self.sweeps += 1
        log(
            logger,
            "idle.sweep",
            candidates=len(candidates),
            stopped=len(stopped),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return stopped

    def _in_use(self, uid: str, pid: str) -> bool:
        return self.chat.replying(uid, pid) or self.lifecycle.running(uid, pid)

    async def _check(self, project: Project) -> Project | None:
        uid, pid = project.user_id, project.project_id
        if self._in_use(uid, pid):
            return None  # its reply's end (or the transition) sets the clock again
        try:
            async with self._calls:
                busy = bool(project.endpoint) and await self.goose.busy(project.endpoint or "")
        except GooseUnreachable as exc:
            if exc.timeout:
                return None  # it could not say in time: not stopped on a guess
            busy = False  # refused: an agent that cannot answer does no work worth keeping
        if busy:
            await self.store.touch(uid, pid)  # working on a reply: that counts as use
            return None
        fresh = await self.store.get(uid, pid)  # a message may have come meanwhile
        last = (fresh or {}).get("last_activity_at")
        cutoff = now() - timedelta(minutes=self.timeout)
        if fresh is None or (last is not None and last >= cutoff) or self._in_use(uid, pid):
            return None
        minutes = f"{self.timeout:g}"
        try:
            await self.lifecycle.deactivate(
                project,
                wait=False,
                reason=IDLE_REASON,
                why=f"Stopped after {minutes} min without activity",
                # not if a message touched it since this reading, on any replica
                unless_changed={"last_activity_at": last},
            )
        except GooseUIError as exc:  # changed meanwhile (a message, another replica's stop)
            log(logger, "idle.not_stopped", user_id=uid, project_id=pid, error=exc.detail)
            return None
        log(logger, "idle.stopped", user_id=uid, project_id=pid, minutes=minutes)
        return project
