"""`SimCluster`: the simulated cluster assembled, plus its fault API and a thread runner.

The console, the tests and the benchmark all start the simulator through this
module; `SimClusterThread` keeps the simulator's work (API server, controllers, pod
servers) on its own event loop in its own thread so it never competes with the
caller's loop, and offers thread-safe wrappers for the fault API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from . import control, kubeconfig, netpol, tls
from .api import ApiServer
from .audit import Audit
from .deployments import DeploymentController, ReplicaSetController
from .events import EventRecorder
from .faults import AgentFault, Faults, RequestFault
from .gateway import GatewayController
from .goose import AgentDatabases, AgentLog, GooseServer, StreamRecord
from .kubelet import Kubelet, node_object, node_status
from .lifecycle import GarbageCollector, NamespaceController, QuotaController
from .process import Launch
from .proxy import ServiceProxy
from .registry import Registry
from .resources import NAMESPACES, NODES, SERVICES
from .settings import (
    AgentSettings,
    Delays,
    agent_from_env,
    delays_from_env,
    proxy_source_from_env,
)
from .store import Obj, Store
from .workqueue import WorkQueue

log = logging.getLogger(__name__)
T = TypeVar("T")

KUBECONFIG_NAME = "simulated-kubeconfig.yaml"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class SimCluster:
    """A Kubernetes API subset, controllers and simulated Goose pods on loopback.

    Create it, `await start()`, point clients at `kubeconfig_path` (or `url`), and
    `await stop()`. Every method of the fault API must be called on the loop that
    started the cluster (use `SimClusterThread` for cross-thread calls).
    """

    def __init__(
        self,
        data_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        delays: Delays | None = None,
        agent: AgentSettings | None = None,
        token: str | None = None,
        kubeconfig_path: str | Path | None = None,
        history_limit: int = 20000,
        proxy_source: str | netpol.TrafficSource | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.requested_port = port
        # unset timings come from GOOSEUI_SIM_DELAY_* / GOOSEUI_SIM_AGENT_* (defaults otherwise)
        self.delays = delays or delays_from_env()
        self.agent = agent or agent_from_env()
        self.token = token or secrets.token_urlsafe(24)
        self.kubeconfig_path = (
            Path(kubeconfig_path) if kubeconfig_path else self.data_dir / KUBECONFIG_NAME
        )
        # where service-proxy traffic comes from (NetworkPolicy source); None: from
        # GOOSEUI_SIM_PROXY_SOURCE, default a konnectivity agent pod in kube-system
        if proxy_source is None:
            proxy_source = proxy_source_from_env()
        if isinstance(proxy_source, str):
            proxy_source = netpol.parse_source(proxy_source)
        self._initial_proxy_source = proxy_source
        self.proxy_source: netpol.TrafficSource = proxy_source
        self.port = 0
        self.store = Store(history_limit)
        self.registry = Registry(self.store)
        self.faults = Faults()
        self.agent_databases = AgentDatabases()
        self.agent_log = AgentLog()
        self.recorder = EventRecorder(self.registry)
        self.certificates: tls.Certificates | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._queues: list[WorkQueue[Any]] = []
        self._api: ApiServer | None = None
        self._namespaces: NamespaceController | None = None
        self.kubelet: Kubelet | None = None
        self.proxy: ServiceProxy | None = None
        self._launches: deque[Launch] = deque(maxlen=2000)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The API server's base URL (https://127.0.0.1:PORT)."""
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        assert self.certificates is not None, "start() first"
        return self.certificates.ca

    @property
    def requests_served(self) -> int:
        return self._api.requests_served if self._api else 0

    @property
    def audit(self) -> Audit:
        """The resource requests served by verb and resource, and the watches open."""
        assert self._api is not None, "start() first"
        return self._api.audit

    def set_bookmark_seconds(self, seconds: float) -> None:
        """How often a watch that asked for bookmarks gets one (the API server: 60 s)."""
        assert self._api is not None, "start() first"
        self._api.bookmark_seconds = seconds

    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "start() first"
        return self._http

    async def start(self) -> SimCluster:
        """Start serving; returns self once the kubeconfig is written."""
        self.certificates = await asyncio.to_thread(
            tls.ensure_certificates, self.data_dir / "simulated-cluster-tls", self.host
        )
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )
        self._bootstrap()
        self.kubelet = Kubelet(
            self.registry, self.recorder, lambda: self.delays, self._make_server, self.http
        )
        deployments = DeploymentController(self.registry, self.recorder)
        replicasets = ReplicaSetController(self.registry, self.recorder)
        gc = GarbageCollector(self.registry)
        namespaces = NamespaceController(self.registry, self.recorder, self.delays)
        quotas = QuotaController(self.registry)
        gateways = GatewayController(self.registry)
        for listener in (
            self.kubelet.on_change,
            replicasets.on_change,
            deployments.on_change,
            gc.on_change,
            namespaces.on_change,
            quotas.on_change,
            gateways.on_change,
        ):
            self.store.subscribe(listener)
        self._namespaces = namespaces
        self._queues = [
            deployments.queue,
            replicasets.queue,
            gc.queue,
            namespaces.queue,
            quotas.queue,
            gateways.queue,
        ]
        for queue in self._queues:
            queue.start()
        gateways.bootstrap()
        self.proxy = ServiceProxy(
            self.registry,
            self.kubelet.endpoint,
            self.http,
            lambda: self.proxy_source,
            lambda: self.delays.proxy_dial_timeout,
        )
        self._api = ApiServer(
            self.registry,
            self.faults,
            self.token,
            self.proxy.handle,
            self.kubelet.container_log,
            control.routes(self),
        )
        self._runner = web.AppRunner(
            self._api.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        ssl_context = await asyncio.to_thread(self.certificates.server_context)
        site = web.TCPSite(self._runner, self.host, self.requested_port, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._api.server_address = f"{self.host}:{self.port}"
        ca_pem = await asyncio.to_thread(self.certificates.ca.read_bytes)
        await asyncio.to_thread(
            kubeconfig.write, self.kubeconfig_path, self.url, self.token, ca_pem
        )
        log.info("simulated cluster serving at %s (kubeconfig %s)", self.url, self.kubeconfig_path)
        return self

    async def stop(self) -> None:
        """Stop pods, controllers and the API server; close every connection."""
        if self.kubelet is not None:
            await self.kubelet.stop()
        self.store.close_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for queue in self._queues:
            await queue.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.agent_databases.close()

    async def __aenter__(self) -> SimCluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _bootstrap(self) -> None:
        for name in SYSTEM_NAMESPACES:
            self.registry.create(NAMESPACES, "", {"metadata": {"name": name}}, "kube-apiserver")
        # every cluster has it; the kubelet gives each container KUBERNETES_SERVICE_HOST etc.
        self.registry.create(
            SERVICES,
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "clusterIP": "10.96.0.1",
                    "ports": [
                        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}
                    ],
                },
            },
            "kube-apiserver",
        )
        self.registry.create(NODES, "", node_object(), "kubelet")
        status = node_status()
        self.registry.mutate(
            NODES,
            "",
            node_object()["metadata"]["name"],
            lambda n: n.__setitem__("status", status),
            "kubelet",
            track=False,
        )

    def _make_server(
        self,
        pod: Obj,
        project: tuple[str, str],
        env: dict[str, str],
        healthy: bool,
        on_log: Callable[[str], None],
        files: dict[str, str] | None = None,
        argv: list[str] | None = None,
    ) -> GooseServer:
        launch = Launch(pod["metadata"]["name"], project, env, files or {}, on_log, argv or [])
        self._launches.append(launch)
        return GooseServer(
            launch, self.agent_databases, lambda: self.agent, self.faults, self.agent_log, healthy
        )

    # ------------------------------------------------------------------ fault API

    def set_nodes_schedulable(self, schedulable: bool) -> None:
        """Cordon (False) or uncordon (True) the node; new pods stay Pending/Unschedulable."""
        for node in self.store.list(NODES.key):

            def change(n: Obj) -> None:
                if schedulable:
                    n["spec"].pop("unschedulable", None)
                else:
                    n["spec"]["unschedulable"] = True

            self.registry.mutate(NODES, "", node["metadata"]["name"], change, "kubectl-cordon")

    def fail_requests(
        self,
        path_prefix: str,
        status: int,
        count: int | None = 1,
        method: str | None = None,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> RequestFault:
        """Answer the next `count` API calls under `path_prefix` (optionally one method)
        with `status` and a `Status` body (`count=None`: until `clear_faults`)."""
        return self.faults.add_request_fault(
            RequestFault(path_prefix, status, count, method, retry_after, message)
        )

    def hang_requests(
        self, path_prefix: str = "/", count: int | None = None, method: str | None = None
    ) -> RequestFault:
        """Answer nothing to API calls under `path_prefix` (the next `count` of them, or all)
        until `clear_faults`: a hanging, not a refusing, API server."""
        return self.faults.add_request_fault(RequestFault(path_prefix, 0, count, method, hang=True))

    def freeze_watches(self) -> None:
        """Open watches, and new ones, send nothing (no event, no bookmark) and stay open
        until `clear_faults`: an API server or a proxy stuck in the middle of a stream."""
        self.faults.watches_flow.clear()

    def agent_die_after(
        self,
        events: int,
        namespace: str | None = None,
        deployment: str | None = None,
        count: int | None = 1,
    ) -> AgentFault:
        """The next `count` reply streams (of one project, or any) drop the connection
        after `events` events."""
        return self.faults.add_agent_fault(
            AgentFault(namespace, deployment, die_after_events=events, count=count)
        )

    def agent_split_events(
        self,
        chunk_size: int = 7,
        pause: float = 0.005,
        namespace: str | None = None,
        deployment: str | None = None,
        count: int | None = None,
    ) -> AgentFault:
        """Reply streams write each event in `chunk_size`-byte pieces with `pause` between."""
        return self.faults.add_agent_fault(
            AgentFault(
                namespace, deployment, split_chunk_size=chunk_size, split_pause=pause, count=count
            )
        )

    def set_slow_readiness(self, seconds: float) -> None:
        """Extra time every new pod takes to become Ready."""
        self.delays = replace(self.delays, slow_readiness=seconds)

    def set_delays(self, **changes: float) -> None:
        """Change pod timings for pods that start from now on (see `Delays`)."""
        self.delays = replace(self.delays, **changes)
        if self._namespaces is not None:
            self._namespaces.delays = self.delays

    def set_agent(self, **changes: Any) -> None:
        """Change the agent's reply settings for streams that start from now on."""
        self.agent = replace(self.agent, **changes)

    def compact_history(self) -> int:
        """Forget watch history (as etcd compaction): older resourceVersions get 410."""
        return self.store.compact()

    def set_proxy_source(
        self, namespace: str | None = "kube-system", ip: str | None = None
    ) -> None:
        """Where service-proxy (and pod-proxy) traffic comes from, for NetworkPolicy.

        `namespace`: a konnectivity agent pod (IP 10.244.0.250, label
        `k8s-app: konnectivity-agent`) in that namespace, as on AKS; `ip` alone: the API
        server's host address, not a pod (AKS API Server VNet Integration, kubeadm, kind,
        k3s), which only `ipBlock` peers match. Takes effect for the next request.
        """
        if ip is not None:
            if namespace not in (None, "kube-system"):
                raise ValueError("give exactly one of namespace= or ip=")
            namespace = None
        self.proxy_source = netpol.source_from(namespace, ip)

    def set_agent_database_outage(self, active: bool) -> None:
        """While active, every agent's MongoDB ping fails: its health answers 503, as the
        real agent's does when its database blips (its port stays open)."""
        self.agent_databases.outage = active

    def clear_faults(self) -> None:
        """Remove request and agent faults, uncordon the node, reset slow readiness and the
        proxy source (to the constructor's), end a database outage."""
        self.agent_databases.outage = False
        self.faults.clear()
        self.set_nodes_schedulable(True)
        self.delays = replace(self.delays, slow_readiness=0.0)
        self.proxy_source = self._initial_proxy_source

    def agent_records(self, kind: str | None = None) -> list[StreamRecord]:
        """Reply stream records: `started`, `completed`, `client_disconnected`, `died`,
        `server_stopped`."""
        return [r for r in self.agent_log.records if kind is None or r.kind == kind]

    def launches(self, namespace: str | None = None, pod: str | None = None) -> list[Launch]:
        """Every agent start the kubelet made (newest last, the last 2000): the resolved
        environment and files as the process saw them."""
        return [
            launch
            for launch in self._launches
            if (namespace is None or launch.project[0] == namespace)
            and (pod is None or launch.pod == pod)
        ]

    async def wait_agent_record(
        self, kind: str, start: int = 0, within: float = 5.0
    ) -> StreamRecord | None:
        """Wait up to `within` seconds for a stream record of `kind` at index >= `start`."""
        return await self.agent_log.wait_for(kind, start, within)


class SimClusterThread:
    """Runs a `SimCluster` on its own event loop in a daemon thread.

    `start()` blocks until the cluster serves; the fault methods are thread-safe
    wrappers that run on the simulator's loop and return its result.
    """

    def __init__(self, data_dir: str | Path, **kwargs: Any) -> None:
        self._args = (data_dir, kwargs)
        self.cluster: SimCluster | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self._cluster().url

    @property
    def kubeconfig_path(self) -> Path:
        return self._cluster().kubeconfig_path

    @property
    def ca_path(self) -> Path:
        return self._cluster().ca_path

    @property
    def token(self) -> str:
        return self._cluster().token

    def _cluster(self) -> SimCluster:
        if self.cluster is None:
            raise RuntimeError("the simulated cluster is not running")
        return self.cluster

    def start(self, timeout: float = 30.0) -> SimClusterThread:
        self._thread = threading.Thread(target=self._main, name="gooseui-simcluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulated cluster did not start in time")
        if self._error is not None:
            raise RuntimeError("the simulated cluster failed to start") from self._error
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _serve(self) -> None:
        data_dir, kwargs = self._args
        self._stop = asyncio.Event()
        cluster = SimCluster(data_dir, **kwargs)
        try:
            await cluster.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            with contextlib.suppress(Exception):
                await cluster.stop()
            return
        self.cluster = cluster
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await cluster.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the cluster and join the thread."""
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self.cluster = None

    def __enter__(self) -> SimClusterThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 30.0, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the simulator's loop and return its result."""

        async def run() -> T:
            return fn(*args, **kwargs)

        return self.run(run(), timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the simulator's loop and wait for its result."""
        if self.loop is None:
            coro.close()
            raise RuntimeError("the simulated cluster is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # thread-safe fault API ------------------------------------------------------

    def set_nodes_schedulable(self, schedulable: bool) -> None:
        self.call(self._cluster().set_nodes_schedulable, schedulable)

    def fail_requests(
        self,
        path_prefix: str,
        status: int,
        count: int | None = 1,
        method: str | None = None,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> RequestFault:
        return self.call(
            self._cluster().fail_requests, path_prefix, status, count, method, retry_after, message
        )

    def agent_die_after(
        self,
        events: int,
        namespace: str | None = None,
        deployment: str | None = None,
        count: int | None = 1,
    ) -> AgentFault:
        return self.call(self._cluster().agent_die_after, events, namespace, deployment, count)

    def agent_split_events(
        self,
        chunk_size: int = 7,
        pause: float = 0.005,
        namespace: str | None = None,
        deployment: str | None = None,
        count: int | None = None,
    ) -> AgentFault:
        return self.call(
            self._cluster().agent_split_events, chunk_size, pause, namespace, deployment, count
        )

    def hang_requests(
        self, path_prefix: str = "/", count: int | None = None, method: str | None = None
    ) -> RequestFault:
        return self.call(self._cluster().hang_requests, path_prefix, count, method)

    def freeze_watches(self) -> None:
        self.call(self._cluster().freeze_watches)

    def set_bookmark_seconds(self, seconds: float) -> None:
        self.call(self._cluster().set_bookmark_seconds, seconds)

    def set_slow_readiness(self, seconds: float) -> None:
        self.call(self._cluster().set_slow_readiness, seconds)

    def set_delays(self, **changes: float) -> None:
        self.call(self._cluster().set_delays, **changes)

    def set_agent(self, **changes: Any) -> None:
        self.call(self._cluster().set_agent, **changes)

    def compact_history(self) -> int:
        return self.call(self._cluster().compact_history)

    def set_proxy_source(
        self, namespace: str | None = "kube-system", ip: str | None = None
    ) -> None:
        """See `SimCluster.set_proxy_source`."""
        self.call(self._cluster().set_proxy_source, namespace, ip)

    @property
    def proxy_source(self) -> netpol.TrafficSource:
        return self._cluster().proxy_source

    def set_agent_database_outage(self, active: bool) -> None:
        """See `SimCluster.set_agent_database_outage`."""
        self.call(self._cluster().set_agent_database_outage, active)

    def clear_faults(self) -> None:
        self.call(self._cluster().clear_faults)

    def agent_records(self, kind: str | None = None) -> list[StreamRecord]:
        return self.call(self._cluster().agent_records, kind)

    def launches(self, namespace: str | None = None, pod: str | None = None) -> list[Launch]:
        return self.call(self._cluster().launches, namespace, pod)

    def wait_agent_record(
        self, kind: str, start: int = 0, within: float = 5.0
    ) -> StreamRecord | None:
        """Block until a stream record of `kind` exists (see `SimCluster.agent_records`)."""
        return self.run(self._cluster().wait_agent_record(kind, start, within), within + 5)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await a coroutine run on the simulator's loop without blocking the caller's loop."""
        if self.loop is None:
            coro.close()
            raise RuntimeError("the simulated cluster is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    @property
    def requests_served(self) -> int:
        return self.call(lambda: self._cluster().requests_served)

    def audit(self, reset: bool = False) -> dict[str, Any]:
        """`SimCluster.audit` as JSON (see `Audit.to_json`); `reset` starts counting anew."""

        def read() -> dict[str, Any]:
            audit = self._cluster().audit
            data = audit.to_json()
            if reset:
                audit.reset()
            return data

        return self.call(read)


def run_in_thread(data_dir: str | Path, **kwargs: Any) -> SimClusterThread:
    """Start a `SimCluster` in its own thread and return the running handle."""
    return SimClusterThread(data_dir, **kwargs).start()
