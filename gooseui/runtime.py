"""The running console's parts, started and stopped together.

This is the composition root: it turns settings into a database connection, a store and a
service. It knows nothing about NiceGUI or FastAPI; `gooseui.app` ties it to the web app's
lifespan, which is awaited, so no page or route is served before the parts exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, uri_parser
from pymongo.errors import AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError

from gooseui.chat import ChatService
from gooseui.cluster import manifests
from gooseui.cluster.agentenv import DEMO_PROVIDER, AgentEnvSource
from gooseui.cluster.client import KubeClient
from gooseui.cluster.environment import Environments
from gooseui.config import Settings, env_name
from gooseui.diagnostics import Diagnostics
from gooseui.embedded import EmbeddedMongo
from gooseui.errors import Unavailable
from gooseui.events import EventBus
from gooseui.fanout import EventFanout
from gooseui.goose import GooseClient
from gooseui.idle import IdleSweeper
from gooseui.lifecycle import Lifecycle, replica_id
from gooseui.locks import ReplyLocks
from gooseui.logs import log
from gooseui.looplag import LoopLagMonitor
from gooseui.reconcile import Reconciler, Report
from gooseui.service import ProjectService
from gooseui.store import Document, ProjectStore, create_client

READY_SECONDS = 2.5  # each check of /readyz; the whole answer comes within 3 s
HEALTH_SECONDS = 10.0  # the process's one background probe runs this often (`Runtime.health`)
HEALTH_MIN_GAP = 1.0  # and never more often than this, however often it is woken

HealthListener = Callable[[bool, dict[str, Any]], None]

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
        self.idle: IdleSweeper | None = None
        # this process among the console's replicas (leases, locks and events name it)
        self.replica = replica_id()
        self.fanout: EventFanout | None = None
        self.locks: ReplyLocks | None = None
        self.environments: Environments | None = None
        self.diagnostics: Diagnostics | None = None
        self.loop_lag = LoopLagMonitor()
        # the process's one health probe (`health()`): its latest result, and who is told
        self._health: tuple[bool, dict[str, Any]] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._health_listeners: list[HealthListener] = []
        self._health_wake = asyncio.Event()

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
        agent_env = AgentEnvSource(settings, self.kube, demo)
        self.diagnostics = Diagnostics(environments, agent_env, cluster_problem=info.problem)
        self.lifecycle = Lifecycle(
            settings,
            store,
            self.bus,
            environments,
            self.goose,
            cluster_problem=info.problem,
            agent_env=agent_env,
            replica=self.replica,
        )
        # a long reply notes its activity three times per idle timeout (at most every minute)
        every = min(60.0, settings.idle_timeout * 20) if settings.idle_timeout else 60.0
        chat = ChatService(store, self.goose, settings.chat_keepalive, self.locks, every)
        self._service = ProjectService(settings, store, self.bus, self.lifecycle, chat)
        if environments is not None:
            self.reconciler = Reconciler(
                store, environments, self.lifecycle, settings.reconcile_interval
            )
            await self.reconciler.start()
            try:
                await store.start_idle_clocks()
            except Unavailable as exc:  # MongoDB away at start: the sweeps wait for it too
                log(logger, "idle.clocks_not_started", logging.WARNING, error=exc.detail)
            self.idle = IdleSweeper(settings.idle_timeout, store, self.lifecycle, chat, self.goose)
            self.idle.start()
        else:
            log(logger, "cluster.unconfigured", logging.WARNING, problem=info.problem)
        self._health_task = asyncio.create_task(self._probe(), name="health probe")
        log(
            logger,
            "console.started",
            database=self.database_label,
            cluster=self.cluster_label,
            users=len(settings.user_list()),
            ms=round((time.perf_counter() - started) * 1000),
        )

    async def stop(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
            self._health_task = None
        await self.loop_lag.stop()
        if self.idle is not None:
            await self.idle.close()
            self.idle = None
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
        self.diagnostics = None

    # health ----------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """The latest result of the process's one probe (every HEALTH_SECONDS), at once.

        Pages read this instead of probing: a hundred open tabs cost MongoDB and the API
        server one probe per interval. Before the first result each check is
        `{"target", "ok": None, "state": "checking"}`; after it, what `readiness()` says,
        with `state` (`ok` or `failing`) and `checked_at` (ISO 8601 UTC) added. `/readyz`
        still probes live: it is the kubelet's question.
        """
        if self._health is not None:
            return self._health
        checking = {"ok": None, "state": "checking"}
        return False, {
            "mongodb": {"target": self.database_label, **checking},
            "cluster": {"target": self.cluster_label, **checking},
        }

    def on_health_change(self, listener: HealthListener) -> Callable[[], None]:
        """Call `listener(ready, checks)` after every probe whose outcome differs from the
        one before (a check turning red or green, or its error changing); returns the
        function that removes it. Listeners run on the event loop and must not block."""
        self._health_listeners.append(listener)

        def remove() -> None:
            if listener in self._health_listeners:
                self._health_listeners.remove(listener)

        return remove

    def request_health_check(self) -> None:
        """Run the probe now rather than at its next tick (at most once per HEALTH_MIN_GAP):
        for something that just changed, not for polling."""
        self._health_wake.set()

    def _local_state(self) -> Any:
        """What the process knows without asking anyone and a check reports (the embedded
        database restarted): a change makes the probe run early."""
        if self.embedded is None:
            return None
        return (self.embedded.restarts, self.embedded.last_exit)

    async def _probe(self) -> None:
        """Run the checks every HEALTH_SECONDS (sooner when woken, or when the embedded
        database restarted), keep the result, tell of changes."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                ready, checks = await self.readiness()
            except Exception as exc:  # a bug in a check must not end the probe
                logger.exception("health probe failed")
                ready, checks = False, {"probe": {"ok": False, "error": str(exc)}}
            at = datetime.now(UTC).isoformat()
            for check in checks.values():
                check.setdefault("state", "ok" if check.get("ok") else "failing")
                check["checked_at"] = at
            before = self._health
            self._health = (ready, checks)
            if before is None or _outcome(before[1]) != _outcome(checks):
                if before is not None:
                    log(
                        logger,
                        "health.changed",
                        logging.INFO if ready else logging.WARNING,
                        ready=ready,
                        failing=",".join(n for n, c in checks.items() if not c.get("ok")) or None,
                    )
                for listener in list(self._health_listeners):
                    try:
                        listener(ready, checks)
                    except Exception:
                        logger.exception("health listener failed")
            await self._until_next_probe(started, self._local_state())

    async def _until_next_probe(self, started: float, local: Any) -> None:
        loop = asyncio.get_running_loop()
        deadline = started + HEALTH_SECONDS
        while (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._health_wake.wait(), min(left, 0.5))
            except TimeoutError:
                if self._local_state() != local:
                    break
                continue
            break
        self._health_wake.clear()
        gap = loop.time() - started
        if gap < HEALTH_MIN_GAP:
            await asyncio.sleep(HEALTH_MIN_GAP - gap)

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
                await self._ping()
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

    async def _ping(self) -> None:
        """Ping MongoDB; a ping that fails on a pooled connection the server has closed is
        tried once more, on a fresh one, before it counts as a failure.

        PyMongo's async pool pauses reading on an idle connection, so it does not see the
        server close it (SecantusDB closes connections idle for 5 min, a real server or a
        load balancer after its own idle time) and hands it out again: the ping fails with
        "connection is already closed". Reads and writes retry once by themselves; `ping`
        is a plain command, which PyMongo never retries. The failure has cleared the pool,
        so the second attempt opens a new connection.
        """
        store = self.service.store
        try:
            await store.ping()
        except Unavailable as exc:
            if not _stale_connection(exc.__cause__):
                raise
            log(
                logger,
                "mongo.ping_retried",
                error=str(exc.__cause__).split(" (configured timeouts")[0],
                note="a pooled connection the server had closed; trying a fresh one",
            )
            await store.ping()

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


def _stale_connection(error: BaseException | None) -> bool:
    """Whether a MongoDB failure is a connection that broke, not a server that is gone
    (no server to select) or slow (a timeout)."""
    return isinstance(error, AutoReconnect) and not isinstance(
        error, ServerSelectionTimeoutError | NetworkTimeout
    )


def _outcome(checks: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """What a listener is told about: each check's verdict and error."""
    return {name: (check.get("ok"), check.get("error")) for name, check in checks.items()}
