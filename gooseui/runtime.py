"""The running console's parts, started and stopped together.

This is the composition root: it turns settings into a database connection, a store and a
service. It knows nothing about NiceGUI or FastAPI; `gooseui.app` ties it to the web app's
lifespan, which is awaited, so no page or route is served before the parts exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient, uri_parser

from gooseui.chat import ChatService
from gooseui.cluster import manifests
from gooseui.cluster.agentenv import DEMO_PROVIDER, AgentEnvSource
from gooseui.cluster.client import KubeClient
from gooseui.cluster.environment import Environments
from gooseui.config import Settings, env_name
from gooseui.embedded import EmbeddedMongo
from gooseui.errors import Unavailable
from gooseui.events import EventBus
from gooseui.fanout import EventFanout
from gooseui.goose import GooseClient
from gooseui.lifecycle import Lifecycle, replica_id
from gooseui.locks import ReplyLocks
from gooseui.logs import log
from gooseui.looplag import LoopLagMonitor
from gooseui.reconcile import Reconciler, Report
from gooseui.service import ProjectService
from gooseui.store import Document, ProjectStore, create_client

READY_SECONDS = 2.5  # each check of /readyz; the whole answer comes within 3 s

logger = logging.getLogger("gooseui.runtime")


def describe_mongo(uri: str) -> str:
    """Host and database of a MongoDB URI, without credentials, for the operator to see."""
    try:
        parsed = uri_parser.parse_uri(uri, validate=False, warn=True)
    except Exception:  # an unparsable URI still deserves a label; the driver will complain
        return "MongoDB"
    hosts = ",".join(f"{host}:{port}" for host, port in parsed.get("nodelist", []))
    return hosts or "MongoDB"


@dataclass(frozen=True)
class SetupWarning:
    """Something the operator should know about the console's set-up, shown in the header."""

    short: str
    detail: str


def setup_warnings(settings: Settings) -> list[SetupWarning]:
    """What is risky in these settings (the agent's API has no authentication)."""
    warnings = []
    kind = manifests.route_kind(settings)
    if kind == "Ingress" and not settings.route_allow_cidrs:
        warnings.append(
            SetupWarning(
                "Routes are open",
                "Every project's agent API is published on its route without a source "
                "allow-list, and it has no authentication: anyone who reaches the host can "
                f"change the agent's tools and model. Set {env_name('route_allow_cidrs')}, or "
                f"{env_name('exposure')}=none.",
            )
        )
    elif kind == "HTTPRoute":
        warnings.append(
            SetupWarning(
                "Routes are open",
                "Every project's agent API is published on its HTTPRoute, and it has no "
                "authentication. The Gateway API has no standard source allow-list, so "
                f"{env_name('route_allow_cidrs')} does not apply to HTTPRoutes: restrict the "
                f"Gateway's listener with your gateway's own policy, or set "
                f"{env_name('exposure')}=none.",
            )
        )
    return warnings


class Runtime:
    """Everything the faces call into, with its start and stop."""

    def __init__(self, settings: Settings, simulated: bool = False) -> None:
        self.settings = settings
        # `gooseui --simulate` without a configured agent environment gives the simulated
        # agents a demo one (the console's own database), so it needs no configuration
        self.simulated = simulated
        self.warnings = setup_warnings(settings)
        self.embedded: EmbeddedMongo | None = None
        self.mongo: AsyncMongoClient[Document] | None = None
        self._service: ProjectService | None = None
        self.database_label = "MongoDB"
        self.bus = EventBus()
        self.kube = KubeClient(settings.kubeconfig)
        self.goose: GooseClient | None = None
        self.lifecycle: Lifecycle | None = None
        self.reconciler: Reconciler | None = None
        # this process among the console's replicas (leases, locks and events name it)
        self.replica = replica_id()
        self.fanout: EventFanout | None = None
        self.locks: ReplyLocks | None = None
        self.environments: Environments | None = None
        self.loop_lag = LoopLagMonitor()

    @property
    def reconciliation(self) -> Report | None:
        """What reconciliation last found (the last full pass, and the drift seen since)."""
        return self.reconciler.report if self.reconciler is not None else None

    @property
    def cluster_label(self) -> str:
        return self.settings.cluster_label or self.kube.info.label

    @property
    def service(self) -> ProjectService:
        if self._service is None:
            raise Unavailable("The console is still starting.", code="Starting")
        return self._service

    async def start(self) -> None:
        started = time.perf_counter()
        self.loop_lag.start()
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
        demo = None
        if self.simulated and not (settings.goose_env_secret or settings.goose_env_file):
            demo = {"MONGODB_URL": uri, **DEMO_PROVIDER}
        for warning in self.warnings:
            log(logger, "console.warning", logging.WARNING, warning=warning.detail)
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
        info = await self.kube.connect()
        environments = Environments(self.kube, settings) if info.configured else None
        if environments is not None:
            environments.start()
            await asyncio.to_thread(manifests.warm)
        self.environments = environments
        self.goose = GooseClient(self.kube)
        if info.configured:
            await asyncio.to_thread(self.goose.warm)
        database = self.mongo[settings.mongo_db]
        collection = settings.projects_collection
        self.fanout = EventFanout(
            database[f"{collection}_events"],
            self.bus,
            self.replica,
            database[f"{collection}_replicas"],
        )
        await self.fanout.start()
        self.locks = ReplyLocks(database[f"{collection}_reply_locks"], self.replica)
        self.lifecycle = Lifecycle(
            settings,
            store,
            self.bus,
            environments,
            self.goose,
            cluster_problem=info.problem,
            agent_env=AgentEnvSource(settings, self.kube, demo),
            replica=self.replica,
        )
        self._service = ProjectService(
            settings,
            store,
            self.bus,
            self.lifecycle,
            ChatService(store, self.goose, settings.chat_keepalive, self.locks),
        )
        if environments is not None:
            self.reconciler = Reconciler(
                store, environments, self.lifecycle, settings.reconcile_interval
            )
            await self.reconciler.start()
        else:
            log(logger, "cluster.unconfigured", logging.WARNING, problem=info.problem)
        log(
            logger,
            "console.started",
            database=self.database_label,
            cluster=self.cluster_label,
            users=len(settings.user_list()),
            ms=round((time.perf_counter() - started) * 1000),
        )

    async def stop(self) -> None:
        await self.loop_lag.stop()
        if self.reconciler is not None:
            await self.reconciler.stop()
            self.reconciler = None
        if self.lifecycle is not None:
            await self.lifecycle.close()
        if self.locks is not None:
            await self.locks.close()
            self.locks = None
        if self.fanout is not None:
            await self.fanout.stop()
            self.fanout = None
        if self.goose is not None:
            await self.goose.close()
        if self.environments is not None:
            await self.environments.close()
            self.environments = None
        await self.kube.close()
        if self.mongo is not None:
            await self.mongo.close()
            self.mongo = None
        if self.embedded is not None:
            await self.embedded.stop()
            self.embedded = None
        self._service = None

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether each dependency answers, with a reason when it does not.

        The checks run side by side, each within READY_SECONDS: a hanging dependency makes
        `/readyz` say so in time for a probe, not after the dependency's own timeouts.
        """
        mongodb, cluster = await asyncio.gather(self._mongodb_check(), self._cluster_check())
        checks = {"mongodb": mongodb, "cluster": cluster}
        return all(check["ok"] for check in checks.values()), checks

    async def _mongodb_check(self) -> dict[str, Any]:
        check: dict[str, Any] = {"target": self.database_label}
        try:
            async with asyncio.timeout(READY_SECONDS):
                await self.service.store.ping()
            check["ok"] = True
        except Unavailable as exc:
            check.update(ok=False, error=exc.detail)
        except TimeoutError:
            check.update(ok=False, error=f"MongoDB did not answer within {READY_SECONDS:g} s.")
        if self.fanout is not None:
            check["replicas"] = [self.replica, *self.fanout.peers]
        if self.embedded is not None and self.embedded.last_exit:
            check["restarts"] = self.embedded.restarts
            check["notice"] = (
                f"The embedded database stopped ({self.embedded.last_exit}) and was "
                f"restarted with its data ({self.embedded.restarts} restart(s) so far)."
            )
        return check

    async def _cluster_check(self) -> dict[str, Any]:
        cluster: dict[str, Any] = {"target": self.cluster_label}
        if not self.kube.info.configured:
            cluster.update(ok=False, error=self.kube.info.problem)
        else:
            try:
                version = await self.kube.version(budget=READY_SECONDS)
                cluster.update(ok=True, version=version.get("gitVersion"))
            except Exception as exc:
                cluster.update(ok=False, error=getattr(exc, "detail", None) or str(exc))
        if self.reconciliation is not None:
            cluster["reconciliation"] = self.reconciliation.to_json()
        return cluster
