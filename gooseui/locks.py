"""One reply at a time per conversation, across every console replica, through MongoDB.

The real agent does not refuse a second concurrent reply in one session, so the console
does: a reply holds a lock document `{_id: session_id, holder, expires}` while it streams.
The holder renews its locks together every RENEW_SECONDS; a replica that dies frees its
conversations LOCK_SECONDS after its last renewal, when the next claim takes the lapsed lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from gooseui.logs import log
from gooseui.store import database_error, now

logger = logging.getLogger("gooseui.locks")

LOCK_SECONDS = 60.0
RENEW_SECONDS = 20.0


class ReplyLocks:
    """The conversations with a reply running, as seen by all replicas."""

    def __init__(self, collection: AsyncCollection[Any], holder: str) -> None:
        self._collection = collection
        self.holder = holder
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None

    async def claim(self, session_id: str) -> bool:
        """Take the conversation's lock; False when a reply is running there already."""
        started = time.perf_counter()
        lock = {"holder": self.holder, "expires": now() + timedelta(seconds=LOCK_SECONDS)}
        try:
            try:
                await self._collection.insert_one({"_id": session_id, **lock})
                taken = True
            except DuplicateKeyError:  # held, or left by a replica that died: lapsed?
                taken = (
                    await self._collection.find_one_and_update(
                        {"_id": session_id, "expires": {"$lt": now()}}, {"$set": lock}
                    )
                    is not None
                )
        except PyMongoError as exc:
            raise database_error(exc) from exc
        log(
            logger,
            "mongo.write",
            op="claim_reply",
            session_id=session_id,
            result="ok" if taken else "held",
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if taken:
            self._held.add(session_id)
            if self._renewer is None or self._renewer.done():
                self._renewer = asyncio.create_task(self._renew(), name="reply locks")
        return taken

    async def release(self, session_id: str) -> None:
        if session_id not in self._held:
            return
        self._held.discard(session_id)
        started = time.perf_counter()
        try:
            await self._collection.delete_one({"_id": session_id, "holder": self.holder})
        except PyMongoError as exc:  # the lock lapses on its own
            log(logger, "mongo.error", logging.WARNING, op="release_reply", error=str(exc))
            return
        log(
            logger,
            "mongo.write",
            op="release_reply",
            session_id=session_id,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(RENEW_SECONDS)
            held = list(self._held)
            if not held:
                return
            try:
                await self._collection.update_many(
                    {"_id": {"$in": held}, "holder": self.holder},
                    {"$set": {"expires": now() + timedelta(seconds=LOCK_SECONDS)}},
                )
                log(logger, "mongo.write", op="renew_replies", count=len(held))
            except PyMongoError as exc:
                log(logger, "mongo.error", logging.WARNING, op="renew_replies", error=str(exc))

    async def close(self) -> None:
        """Free what this replica holds (its replies end with it)."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        for session_id in list(self._held):
            await self.release(session_id)
