"""The running console's parts, started and stopped together.

This is the composition root: it turns settings into a database connection, a store and a
service. It knows nothing about NiceGUI or FastAPI; `gooseui.app` ties it to the web app's
lifespan, which is awaited, so no page or route is served before the parts exist.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymongo import AsyncMongoClient, uri_parser

from gooseui.config import Settings
from gooseui.embedded import EmbeddedMongo
from gooseui.errors import Unavailable
from gooseui.logs import log
from gooseui.service import ProjectService
from gooseui.store import Document, ProjectStore, create_client

logger = logging.getLogger("gooseui.runtime")


def describe_mongo(uri: str) -> str:
    """Host and database of a MongoDB URI, without credentials, for the operator to see."""
    try:
        parsed = uri_parser.parse_uri(uri, validate=False, warn=True)
    except Exception:  # an unparsable URI still deserves a label; the driver will complain
        return "MongoDB"
    hosts = ",".join(f"{host}:{port}" for host, port in parsed.get("nodelist", []))
    return hosts or "MongoDB"


class Runtime:
    """Everything the faces call into, with its start and stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedMongo | None = None
        self.mongo: AsyncMongoClient[Document] | None = None
        self._service: ProjectService | None = None
        self.database_label = "MongoDB"

    @property
    def service(self) -> ProjectService:
        if self._service is None:
            raise Unavailable("The console is still starting.", code="Starting")
        return self._service

    async def start(self) -> None:
        started = time.perf_counter()
        settings = self.settings
        uri = settings.mongo_uri
        if uri is None:
            data = settings.data_dir.resolve()
            data.mkdir(parents=True, exist_ok=True)
            self.embedded = EmbeddedMongo(data / "db", log_file=data / "db.log")
            uri = await self.embedded.start()
            self.database_label = f"embedded ({self.embedded.storage})"
        else:
            self.database_label = describe_mongo(uri)
        self.mongo = create_client(uri)
        store = ProjectStore(self.mongo, settings.mongo_db, settings.projects_collection)
        try:
            await store.ensure_indexes()
        except Exception as exc:  # a down MongoDB must not stop the console: /readyz tells
            log(
                logger,
                "mongo.unavailable",
                logging.WARNING,
                error=str(exc).split(",")[0],
                note="indexes will be created on first use",
            )
        self._service = ProjectService(settings, store)
        log(
            logger,
            "console.started",
            database=self.database_label,
            users=len(settings.user_list()),
            ms=round((time.perf_counter() - started) * 1000),
        )

    async def stop(self) -> None:
        if self.mongo is not None:
            await self.mongo.close()
            self.mongo = None
        if self.embedded is not None:
            await self.embedded.stop()
            self.embedded = None
        self._service = None

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether each dependency answers, with a reason when it does not."""
        checks: dict[str, Any] = {}
        try:
            await self.service.store.ping()
            checks["mongodb"] = {"ok": True, "target": self.database_label}
        except Unavailable as exc:
            checks["mongodb"] = {"ok": False, "target": self.database_label, "error": exc.detail}
        return all(check["ok"] for check in checks.values()), checks
