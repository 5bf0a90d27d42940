"""The MongoDB repository of projects (DESIGN section 3).

MongoDB is the source of truth. Uniqueness is left to unique indexes, not to a read before
a write, so that concurrent creates cannot both win; every status change is a conditional
update filtered on the expected current status, so that two requests cannot both start
the same transition.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from secrets import token_hex
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReadPreference, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from gooseui.errors import Conflict, Unavailable
from gooseui.logs import log
from gooseui.models import Status

LEASE_SECONDS = 10.0
"""How long a console replica owns the work on a project without renewing: a replica that
dies is out of the way this long after its last renewal."""

LeaseOp = Literal["take", "release", "free"]

logger = logging.getLogger("gooseui.store")

Document = dict[str, Any]

INDEXES: list[tuple[str, list[tuple[str, int]], bool]] = [
    ("user_project", [("user_id", ASCENDING), ("project_id", ASCENDING)], True),
    ("user_name", [("user_id", ASCENDING), ("name_key", ASCENDING)], True),
    ("user_created", [("user_id", ASCENDING), ("created_at", DESCENDING)], False),
    # the idle sweep's query: active projects by their last activity
    ("status_activity", [("status", ASCENDING), ("last_activity_at", ASCENDING)], False),
]


TURNS_INDEX = [
    ("user_id", ASCENDING),
    ("project_id", ASCENDING),
    ("session_id", ASCENDING),
    ("at", ASCENDING),
]
MAX_TURNS = 1000  # of one conversation, read back with its history


class DuplicateName(Conflict):
    code = "DuplicateName"


class DuplicateProjectId(Conflict):
    code = "DuplicateProjectId"


def now() -> datetime:
    """The current UTC time at MongoDB's precision, so a stored time reads back equal."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


REFUSAL_MEMORY = 30.0
_last_refusal = -REFUSAL_MEMORY


def database_error(exc: PyMongoError) -> Unavailable:
    """What the operator reads: refused credentials are not an unreachable server."""
    global _last_refusal
    text = str(exc)
    refused = (isinstance(exc, OperationFailure) and exc.code == 18) or (
        "authentication failed" in text.lower()
    )
    if refused:
        _last_refusal = time.monotonic()
    elif "pool paused" in text and time.monotonic() - _last_refusal < REFUSAL_MEMORY:
        # PyMongo pauses the pool after a refused login: another caller's refusal is the cause
        refused = True
    if refused:
        return Unavailable(
            "MongoDB refused the credentials in MONGO_URI (authentication failed).",
            code="DatabaseAuthFailed",
        )
    return Unavailable(
        f"MongoDB is not answering ({text.split(',')[0][:300]})", code="DatabaseUnavailable"
    )


def name_key(name: str) -> str:
    """The form of a name that uniqueness is judged on: case-folded NFC."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def create_client(uri: str) -> AsyncMongoClient[Document]:
    """A client that returns aware UTC datetimes and gives up quickly on a dead server.

    Timeouts given in the URI win over these defaults (keyword arguments would override them).
    """
    options: dict[str, Any] = {"tz_aware": True, "appname": "gooseui"}
    lowered = uri.lower()
    # socketTimeoutMS: a server that accepts and never answers (stopped, swapping) fails an
    # operation in 10 s instead of holding it, and whoever waits on it, for ever
    # maxIdleTimeMS: a pooled connection idle for 4 min is closed by the client before a
    # server that drops idle ones (SecantusDB after 5 min, a cloud load balancer) does; the
    # pool otherwise hands out the dead socket, and a command that is not retried fails
    defaults = (
        ("serverSelectionTimeoutMS", 5000),
        ("connectTimeoutMS", 5000),
        ("socketTimeoutMS", 10000),
        ("maxIdleTimeMS", 240000),
    )
    for name, value in defaults:
        if name.lower() not in lowered:
            options[name] = value
    return AsyncMongoClient(uri, **options)


class ProjectStore:
    """Project records in one collection."""

    def __init__(self, client: AsyncMongoClient[Document], database: str, collection: str) -> None:
        self._client = client
        self._collection: AsyncCollection[Document] = client[database][collection]
        # what the agent's history does not keep of a reply (its tool calls and errors)
        self._turns: AsyncCollection[Document] = client[database][f"{collection}_turns"]
        # a write's read-back must see the write: whatever read preference the URI sets
        self._primary = self._collection.with_options(read_preference=ReadPreference.PRIMARY)
        self._indexes_ready = False
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _guard(self, op: str) -> AsyncIterator[None]:
        """Turn a lost connection into a 503 the operator can read, and make indexes first."""
        try:
            if not self._indexes_ready:
                await self.ensure_indexes()
            yield
        except (DuplicateKeyError, Conflict):
            raise
        except PyMongoError as exc:
            error = database_error(exc)
            log(logger, "mongo.error", logging.WARNING, op=op, error=error.detail)
            raise error from exc

    async def ensure_indexes(self) -> None:
        """Create the indexes once; later calls return at once."""
        async with self._lock:
            if self._indexes_ready:
                return
            for name, keys, unique in INDEXES:
                await self._collection.create_index(keys, name=name, unique=unique)
            await self._turns.create_index(TURNS_INDEX, name="project_session")
            self._indexes_ready = True
            log(logger, "mongo.indexes", collection=self._collection.full_name)

    async def ping(self) -> None:
        """Raise unless the server answers."""
        try:
            await self._client.admin.command("ping")
        except PyMongoError as exc:
            raise database_error(exc) from exc

    def _logged(self, op: str, started: float, **fields: Any) -> None:
        log(
            logger,
            "mongo.write",
            op=op,
            ms=round((time.perf_counter() - started) * 1000, 1),
            **fields,
        )

    async def insert(self, doc: Document) -> Document:
        """Insert a new project; a taken name or id raises a `Conflict`."""
        started = time.perf_counter()
        async with self._guard("insert"):
            try:
                await self._collection.insert_one(doc)
            except DuplicateKeyError as exc:
                self._logged(
                    "insert",
                    started,
                    user_id=doc["user_id"],
                    project_id=doc["project_id"],
                    result="duplicate",
                )
                raise _duplicate(exc, doc.get("name", "")) from None
        self._logged(
            "insert",
            started,
            user_id=doc["user_id"],
            project_id=doc["project_id"],
            status=doc.get("status"),
        )
        return doc

    async def get(self, user_id: str, project_id: str) -> Document | None:
        async with self._guard("get"):
            return await self._collection.find_one({"user_id": user_id, "project_id": project_id})

    async def list(self, user_id: str) -> list[Document]:
        """The user's projects, newest first."""
        async with self._guard("list"):
            # a transition's timeline is read with its project alone (`get`), not in lists
            cursor = self._collection.find({"user_id": user_id}, {"timeline": 0}).sort(
                [("created_at", DESCENDING), ("_id", DESCENDING)]
            )
            return await cursor.to_list()

    async def list_all(self) -> list[Document]:
        async with self._guard("list_all"):
            return await self._collection.find({}, {"timeline": 0}).to_list()

    async def count(self, user_id: str) -> int:
        async with self._guard("count"):
            return await self._collection.count_documents({"user_id": user_id})

    async def rename(
        self,
        user_id: str,
        project_id: str,
        name: str,
        forbidden: Iterable[Status] = (),
        extra: Document | None = None,
    ) -> Document | None:
        """Rename unless the project is in one of the `forbidden` statuses.

        Returns None when no project matched (missing, or in a forbidden status).
        """
        started = time.perf_counter()
        query: Document = {"user_id": user_id, "project_id": project_id}
        if forbidden:
            query["status"] = {"$nin": [str(s) for s in forbidden]}
        async with self._guard("rename"):
            try:
                doc = await self._collection.find_one_and_update(
                    query,
                    {
                        "$set": {
                            **(extra or {}),
                            "name": name,
                            "name_key": name_key(name),
                            "updated_at": now(),
                        }
                    },
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError as exc:
                self._logged(
                    "rename", started, user_id=user_id, project_id=project_id, result="duplicate"
                )
                raise _duplicate(exc, name) from None
        self._logged(
            "rename",
            started,
            user_id=user_id,
            project_id=project_id,
            result="ok" if doc else "no-match",
        )
        return doc

    async def compare_and_set(
        self,
        user_id: str,
        project_id: str,
        expected: Iterable[Status],
        changes: Document,
        *,
        holder: str | None = None,
        lease: LeaseOp | None = None,
        where: Document | None = None,
    ) -> Document | None:
        """Apply `changes` only if the status is one of `expected` (and the fields in
        `where` are as given); None when it was not.

        This is the single way a lifecycle transition is written. With `holder`, the work on
        the project is owned through a lease in its document (`lease_holder`,
        `lease_expires`): `take` needs the lease free (absent or expired) or the holder's
        own and gives it to the holder; `release` needs it the holder's and clears it;
        `free` needs it free or the holder's and clears it.
        """
        started = time.perf_counter()
        allowed = [str(s) for s in expected]
        moment = now()
        key = {"user_id": user_id, "project_id": project_id}
        base: Document = {**(where or {}), **key, "status": {"$in": allowed}}
        # the write's own mark: a write retried after a timeout (the first attempt had
        # landed) finds no match, and the mark tells that it was this write that landed
        mark = token_hex(8)
        update = {**changes, "updated_at": moment, "last_write": mark}
        queries = [base]
        if holder is not None and lease is not None:
            if lease == "release":
                queries = [{**base, "lease_holder": holder}]
            else:
                # free or lapsed (`$not $gte` also matches a lease never taken), else the
                # holder's own: two plain conditions, not an `$or`, which costs a server
                # without a query planner (SecantusDB) a scan
                queries = [
                    {**base, "lease_expires": {"$not": {"$gte": moment}}},
                    {**base, "lease_holder": holder},
                ]
            if lease == "take":
                update |= {
                    "lease_holder": holder,
                    "lease_expires": moment + timedelta(seconds=LEASE_SECONDS),
                }
            else:
                update |= {"lease_holder": None, "lease_expires": None}
        async with self._guard("compare_and_set"):
            # an update and a read rather than findAndModify: as atomic a check, and on
            # SecantusDB five times cheaper. The read may show a later write on top of this
            # one (it is still this one's success); from the primary, never a secondary.
            matched = False
            for query in queries:
                if (await self._collection.update_one(query, {"$set": update})).matched_count:
                    matched = True
                    break
            doc = await self._primary.find_one(key)
        if not matched and doc is not None and doc.get("last_write") != mark:
            doc = None  # not this write (a retried one that had landed carries its mark)
        self._logged(
            "compare_and_set",
            started,
            user_id=user_id,
            project_id=project_id,
            expected="|".join(allowed),
            status=changes.get("status"),
            lease=lease,
            result="ok" if doc else "no-match",
        )
        return doc

    async def renew_leases(self, holder: str, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Extend the holder's leases on the projects `keys` in one write, however many;
        returns the keys whose lease is no longer the holder's."""
        if not keys:
            return set()
        ids = sorted({pid for _, pid in keys})
        match = {"lease_holder": holder, "project_id": {"$in": ids}}
        started = time.perf_counter()
        async with self._guard("renew_leases"):
            result = await self._collection.update_many(
                match, {"$set": {"lease_expires": now() + timedelta(seconds=LEASE_SECONDS)}}
            )
            lost: set[tuple[str, str]] = set()
            if result.matched_count < len(keys):
                held = {
                    (doc["user_id"], doc["project_id"])
                    async for doc in self._collection.find(
                        match, {"_id": 0, "user_id": 1, "project_id": 1}
                    )
                }
                lost = set(keys) - held
        self._logged("renew_leases", started, leases=len(keys), lost=len(lost))
        return lost

    async def set_fields(self, user_id: str, project_id: str, fields: Document) -> Document | None:
        """Set settings of a project that no transition owns (`keep_running`); the project
        after, or None when there is none (or it is being deleted)."""
        started = time.perf_counter()
        async with self._guard("set_fields"):
            doc = await self._collection.find_one_and_update(
                {
                    "user_id": user_id,
                    "project_id": project_id,
                    "status": {"$ne": str(Status.DELETING)},
                },
                {"$set": {**fields, "updated_at": now()}},
                projection={"timeline": 0},
                return_document=ReturnDocument.AFTER,
            )
        self._logged(
            "set_fields",
            started,
            user_id=user_id,
            project_id=project_id,
            fields=sorted(fields),
            result="ok" if doc else "no-match",
        )
        return doc

    async def touch(self, user_id: str, project_id: str, active_only: bool = False) -> bool:
        """Note activity on the project (a message, a reply, agent work): the idle stop
        counts from the last one, whichever replica saw it. With `active_only`, only an
        active project is touched; returns whether one was."""
        started = time.perf_counter()
        query: Document = {"user_id": user_id, "project_id": project_id}
        if active_only:
            query["status"] = str(Status.ACTIVE)
        async with self._guard("touch"):
            result = await self._collection.update_one(query, {"$set": {"last_activity_at": now()}})
        self._logged(
            "touch",
            started,
            user_id=user_id,
            project_id=project_id,
            result="ok" if result.matched_count else "no-match",
        )
        return bool(result.matched_count)

    async def start_idle_clocks(self) -> int:
        """Give active projects without a clock (recorded before there was one) a start
        now: the first sweep after an upgrade would otherwise stop them all at once."""
        started = time.perf_counter()
        async with self._guard("start_idle_clocks"):
            result = await self._collection.update_many(
                {"status": str(Status.ACTIVE), "last_activity_at": None},
                {"$set": {"last_activity_at": now()}},
            )
        if result.modified_count:
            self._logged("start_idle_clocks", started, projects=result.modified_count)
        return result.modified_count

    async def idle_since(self, cutoff: datetime) -> list[Document]:
        """Active projects, not kept running, with no activity since `cutoff` (one query)."""
        query = {
            "status": str(Status.ACTIVE),
            "keep_running": {"$ne": True},
            "$or": [
                {"last_activity_at": {"$lt": cutoff}},
                {"last_activity_at": None, "last_activated_at": {"$lt": cutoff}},
            ],
        }
        fields = {"timeline": 0}
        async with self._guard("idle_since"):
            return await self._collection.find(query, fields).to_list()

    async def set_session(self, user_id: str, project_id: str, session_id: str | None) -> None:
        """Remember the project's current Goose session (not a lifecycle transition)."""
        started = time.perf_counter()
        async with self._guard("set_session"):
            await self._collection.update_one(
                {"user_id": user_id, "project_id": project_id},
                {"$set": {"goose_session_id": session_id, "updated_at": now()}},
            )
        self._logged("set_session", started, user_id=user_id, project_id=project_id)

    async def delete(self, user_id: str, project_id: str, expected: Iterable[Status]) -> bool:
        """Remove the record if its status is one of `expected`, and its reply records."""
        started = time.perf_counter()
        allowed = [str(s) for s in expected]
        async with self._guard("delete"):
            result = await self._collection.delete_one(
                {"user_id": user_id, "project_id": project_id, "status": {"$in": allowed}}
            )
        self._logged(
            "delete",
            started,
            user_id=user_id,
            project_id=project_id,
            result="ok" if result.deleted_count else "no-match",
        )
        if result.deleted_count:
            started = time.perf_counter()
            async with self._guard("delete_turns"):
                turns = await self._turns.delete_many(
                    {"user_id": user_id, "project_id": project_id}
                )
            self._logged(
                "delete_turns",
                started,
                user_id=user_id,
                project_id=project_id,
                deleted=turns.deleted_count,
            )
        return bool(result.deleted_count)

    async def add_turn(self, doc: Document) -> None:
        """Keep what a reply showed besides its text (the agent's history drops it)."""
        started = time.perf_counter()
        async with self._guard("add_turn"):
            await self._turns.insert_one(doc)
        self._logged(
            "add_turn",
            started,
            user_id=doc["user_id"],
            project_id=doc["project_id"],
            session_id=doc["session_id"],
            events=len(doc.get("events") or ()),
        )

    async def turns(self, user_id: str, project_id: str, session_id: str) -> list[Document]:
        """The recorded replies of one conversation, oldest first (the newest MAX_TURNS)."""
        async with self._guard("turns"):
            cursor = (
                self._turns.find(
                    {"user_id": user_id, "project_id": project_id, "session_id": session_id},
                    {"_id": 0},
                )
                .sort("at", DESCENDING)
                .limit(MAX_TURNS)
            )
            return list(reversed(await cursor.to_list()))


def _duplicate(exc: DuplicateKeyError, name: str) -> Conflict:
    pattern = (exc.details or {}).get("keyPattern") or {}
    if "name_key" in pattern or "user_name" in str(exc):
        return DuplicateName(f"A project named {name!r} already exists for this user.")
    return DuplicateProjectId("A project with this id already exists.")
