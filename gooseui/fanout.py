"""Progress and status events shared by every console replica, through MongoDB.

Each replica's lifecycle publishes on its own in-process bus; this copies what it publishes
into a collection and delivers to its bus what the other replicas wrote there, so every
replica's pages and `GET …/events` see every project's progress. It reads with a change
stream where the server has them (a replica set, SecantusDB), else by polling every
POLL_SECONDS. Events are a live feed, not the record: one lost while MongoDB is away
costs nothing, since every event and every record carries the project's status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from gooseui.events import EventBus, ProjectEvent
from gooseui.logs import log
from gooseui.store import now

logger = logging.getLogger("gooseui.fanout")

POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 1.0
PEER_SECONDS = 5.0  # a replica not heard of for this long is gone
KEEP_SECONDS = 3600  # a TTL index takes old events away where the server has one
QUEUE_SIZE = 1024
_FIELDS = ("user_id", "project_id", "status", "step", "message", "reason")


class EventFanout:
    """Copy this replica's events out, and the others' in."""

    def __init__(
        self,
        collection: AsyncCollection[Any],
        bus: EventBus,
        replica: str,
        presence: AsyncCollection[Any],
        *,
        change_streams: bool = True,
    ) -> None:
        self._collection = collection
        # who else runs: events are written out only while another replica reads them, so
        # a lone console pays one heartbeat a second, not a write per event
        self._presence = presence
        self.peers: list[str] = []
        self._change_streams = change_streams
        self._bus = bus
        self.replica = replica
        self._outbox: asyncio.Queue[ProjectEvent] = asyncio.Queue(QUEUE_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.mode = "starting"

    async def start(self) -> None:
        try:
            await self._collection.create_index("at", expireAfterSeconds=KEEP_SECONDS)
        except PyMongoError as exc:  # MongoDB down at start: the feed catches up later
            log(logger, "mongo.error", logging.WARNING, op="events_index", error=str(exc))
        self._bus.forward = self._forward
        self._tasks = [
            asyncio.create_task(self._write(), name="events out"),
            asyncio.create_task(self._read(), name="events in"),
        ]
        try:
            await self._beat()
        except PyMongoError as exc:
            log(logger, "mongo.error", logging.WARNING, op="heartbeat", error=str(exc))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="replica heartbeat"))

    async def stop(self) -> None:
        self._bus.forward = None
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        # PyMongo's server selection can swallow a cancellation (and raise its own timeout,
        # which the loops would retry): they also look at `_stopping`, and are not waited
        # for long
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        try:
            async with asyncio.timeout(2):
                await self._presence.delete_one({"_id": self.replica})
        except (PyMongoError, TimeoutError):
            pass  # the others stop counting this one after PEER_SECONDS

    async def _heartbeat(self) -> None:
        while not self._stopping:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._beat()
            except PyMongoError as exc:
                log(logger, "mongo.error", logging.WARNING, op="heartbeat", error=str(exc))

    async def _beat(self) -> None:
        """Say this replica runs, and learn which others do."""
        moment = now()
        await self._presence.update_one(
            {"_id": self.replica}, {"$set": {"seen": moment}}, upsert=True
        )
        # one a second: logged below INFO, where an operator who wants every write sees it
        log(logger, "mongo.write", logging.DEBUG, op="heartbeat", replica=self.replica)
        alive = self._presence.find(
            {
                "_id": {"$ne": self.replica},
                "seen": {"$gte": moment - timedelta(seconds=PEER_SECONDS)},
            }
        )
        self.peers = sorted([doc["_id"] async for doc in alive])

    def _forward(self, event: ProjectEvent) -> None:
        if not self.peers:
            return
        if self._outbox.full():
            self._outbox.get_nowait()  # the newest carries the current status
        self._outbox.put_nowait(event)

    async def _write(self) -> None:
        while not self._stopping:
            event = await self._outbox.get()
            doc = {**{k: getattr(event, k) for k in _FIELDS}, "at": event.at}
            started = time.perf_counter()
            try:
                await self._collection.insert_one({**doc, "replica": self.replica})
                log(
                    logger,
                    "mongo.write",
                    op="event_out",
                    project_id=event.project_id,
                    step=event.step,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
            except PyMongoError as exc:
                log(logger, "mongo.error", logging.WARNING, op="event_out", error=str(exc))

    async def _read(self) -> None:
        since = now()
        while not self._stopping:
            try:
                since = await self._follow(since)
            except asyncio.CancelledError:
                raise
            except PyMongoError as exc:
                if self._stopping:
                    return
                log(logger, "mongo.error", logging.WARNING, op="events_in", error=str(exc))
                await asyncio.sleep(1.0)

    async def _follow(self, since: datetime) -> datetime:
        """Deliver the others' events until the feed breaks; return where to resume."""
        others = {"fullDocument.replica": {"$ne": self.replica}, "operationType": "insert"}
        if not self._change_streams:
            self.mode = "polling"
            return await self._poll(since)
        try:
            async with await self._collection.watch([{"$match": others}]) as stream:
                self.mode = "change stream"
                async for change in stream:
                    self._deliver(change["fullDocument"])
                    since = change["fullDocument"]["at"]
        except OperationFailure as exc:
            if exc.code not in (40573, 40324, 115, 303):  # no change streams on this server
                raise
        self.mode = "polling"
        return await self._poll(since)

    async def _poll(self, since: datetime) -> datetime:
        seen: dict[Any, datetime] = {}
        while not self._stopping:
            if not self.peers:  # nobody writes events for this replica to read
                await asyncio.sleep(POLL_SECONDS)
                continue
            # a little overlap: writers' clocks and commits are not in step
            cursor = self._collection.find(
                {"replica": {"$ne": self.replica}, "at": {"$gte": since - timedelta(seconds=2)}}
            ).sort("at", 1)
            async for doc in cursor:
                if doc["_id"] in seen:
                    continue
                seen[doc["_id"]] = doc["at"]
                self._deliver(doc)
                since = max(since, doc["at"])
            horizon = since - timedelta(seconds=5)
            seen = {key: at for key, at in seen.items() if at >= horizon}
            await asyncio.sleep(POLL_SECONDS)
        return since

    def _deliver(self, doc: dict[str, Any]) -> None:
        fields = {k: doc.get(k) for k in _FIELDS}
        self._bus.deliver(ProjectEvent(**fields, at=doc["at"]))
