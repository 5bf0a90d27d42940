"""One shared, watched cache per kind of object the console manages.

An activation used to open its own list and watches of its Deployment and pods, so the API
server's load and the console's work grew with every activation running at once. Here, as in
client-go's shared informers and kubespawner's reflectors, one list+watch per kind follows
every object carrying the console's `managed-by` label, cluster-wide, for the whole process;
activations, deactivations, the reconciler and drift detection read the cache and sleep on
a per-namespace signal until something in their namespace changes.

- The watch resumes from the last revision seen (bookmarks keep it fresh while nothing
  changes); a 410 Gone lists again, and objects missing from the new list count as deleted.
- A cluster-wide list the console's credentials may not do (403: RBAC bound per namespace)
  turns the informer into per-namespace list+watches, one per namespace somebody waits on
  (`follow`), still shared by everyone in that namespace.
- A watch silent for IDLE_SECONDS (no event and not the minutely bookmark) is taken for a
  stuck connection, and opened again.
- The informer never gives up: a failing API server is retried with a back-off, and
  `failing_for()` tells a waiter how long the cache has been blind, so it can fail with
  `ClusterUnavailable` instead of waiting on a cache that no longer moves.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from gooseui.cluster import manifests
from gooseui.cluster.client import ClusterUnavailable, KubeClient, KubeError, path_for
from gooseui.logs import log

logger = logging.getLogger("gooseui.informer")

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); a cluster-scoped object's namespace is its name
T = TypeVar("T")

WATCH_SECONDS = (240, 300)  # each watch asks to be ended within this (spread, like client-go)
BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)
QUIET_SECONDS = 1.0  # a watch the server ends at once is not opened again before this
# the API server's watch cache sends a bookmark a minute; a watch silent for longer is stuck
IDLE_SECONDS = 90.0


class Signals:
    """Per-namespace wake-ups shared by all informers: who waits on a namespace is woken by
    a change to any kind in it, and nobody else is."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def notify(self, namespace: str) -> None:
        for event in self._waiters.get(namespace, ()):
            event.set()

    def notify_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    def subscribe(self, namespace: str) -> asyncio.Event:
        """An event set on every change in `namespace`."""
        event = asyncio.Event()
        self._waiters.setdefault(namespace, set()).add(event)
        return event

    def unsubscribe(self, namespace: str, event: asyncio.Event) -> None:
        events = self._waiters.get(namespace)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiters[namespace]


class Informer:
    """The console's objects of one kind, as the API server last said they are."""

    def __init__(
        self,
        kube: KubeClient,
        kind: str,
        signals: Signals,
        label_selector: str = manifests.MANAGED_SELECTOR,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.kube = kube
        self.idle_seconds = idle_seconds
        self.kind = kind
        self.signals = signals
        self.label_selector = label_selector
        self.cluster_scoped = kind == "Namespace"
        self.objects: dict[Key, Obj] = {}
        self._by_namespace: dict[str, dict[str, Obj]] = {}  # the same objects, for `select`
        self.scoped = False  # True: per-namespace watches (a cluster-wide list was forbidden)
        self.synced = asyncio.Event()  # the cluster-wide list arrived (or scoping was decided)
        # per list+watch loop (None: the cluster-wide one): since when it fails, and why
        self._failing: dict[str | None, tuple[float, str]] = {}
        self._tasks: dict[str | None, asyncio.Task[None]] = {}
        self._covered: dict[str, asyncio.Event] = {}
        self._listeners: list[Callable[[str, Obj], None]] = []

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if None not in self._tasks:
            self._tasks[None] = asyncio.create_task(self._run(None), name=f"informer-{self.kind}")

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def watches(self) -> int:
        """The list+watch loops running (one, or one per namespace followed)."""
        return sum(not task.done() for task in self._tasks.values())

    # reading ---------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.objects.get((namespace, name))

    def select(self, namespace: str, labels: dict[str, str]) -> list[Obj]:
        """The objects of `namespace` whose labels include all of `labels`."""
        return [
            obj
            for obj in self._by_namespace.get(namespace, {}).values()
            if all(
                ((obj.get("metadata") or {}).get("labels") or {}).get(k) == v
                for k, v in labels.items()
            )
        ]

    def items(self) -> Iterator[Obj]:
        return iter(list(self.objects.values()))

    def failing_for(self, namespace: str | None = None) -> float:
        """Seconds the cache has been unable to follow the cluster (0 while it follows):
        for `namespace` (its own watch, or the cluster-wide one), else for any."""
        scopes = [None, namespace] if namespace is not None else list(self._failing)
        since = [self._failing[scope][0] for scope in scopes if scope in self._failing]
        return time.monotonic() - min(since) if since else 0.0

    def error_for(self, namespace: str | None = None) -> str | None:
        """What the failing watch that covers `namespace` (None: any) last heard."""
        scopes = [None, namespace] if namespace is not None else list(self._failing)
        for scope in scopes:
            if scope in self._failing:
                return self._failing[scope][1]
        return None

    @property
    def error(self) -> str | None:
        return self.error_for()

    def on_change(self, listener: Callable[[str, Obj], None]) -> None:
        """Call `listener(type, obj)` for every change the watch reports (after the cache)."""
        self._listeners.append(listener)

    def follow(self, namespace: str) -> None:
        """Make sure `namespace` is followed: a no-op in cluster-wide mode; in per-namespace
        mode, start that namespace's list+watch if nobody has yet."""
        if not self.scoped or self.cluster_scoped or namespace in self._covered:
            return
        self._covered[namespace] = asyncio.Event()
        self._tasks[namespace] = asyncio.create_task(
            self._run(namespace), name=f"informer-{self.kind}-{namespace}"
        )

    def covers(self, namespace: str) -> bool:
        """Whether the cache holds what the API server listed of `namespace`'s objects."""
        if not self.synced.is_set():
            return False
        if not self.scoped or self.cluster_scoped:
            return True
        listed = self._covered.get(namespace)
        return listed is not None and listed.is_set()

    # following -------------------------------------------------------------------------

    async def _run(self, namespace: str | None) -> None:
        path = path_for(self.kind, namespace)
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list(path, namespace)
                    if version is None:
                        return  # forbidden cluster-wide: the per-namespace watches take over
                opened = time.monotonic()
                seen = 0
                async for event in self.kube.watch(
                    path,
                    resource_version=version,
                    timeout_seconds=random.randint(*WATCH_SECONDS),
                    label_selector=self.label_selector,
                    idle_seconds=self.idle_seconds,
                    # following again once the API server answers, not at the first event
                    # (a quiet kind may send none for a minute)
                    on_open=lambda: self._recovered(namespace),
                ):
                    seen += 1
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") != "BOOKMARK":
                        self._apply(str(event.get("type")), obj)
                failures = 0
                self._recovered(namespace)
                if not seen and time.monotonic() - opened < QUIET_SECONDS:
                    await asyncio.sleep(QUIET_SECONDS)  # a proxy that ends watches at once
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                if exc.status == 410:
                    version = None  # the revision is compacted away: list again
                    continue
                detail = f"{exc.status} {exc.message}"
                failures = await self._failed(namespace, failures, detail)
            except ClusterUnavailable as exc:
                failures = await self._failed(namespace, failures, exc.detail)
            except Exception as exc:  # a bug must not stop the cache for good
                logger.exception("informer %s failed", self.kind)
                detail = f"{type(exc).__name__}: {exc}"
                failures = await self._failed(namespace, failures, detail)

    async def _list(self, path: str, namespace: str | None) -> str | None:
        try:
            listing = await self.kube.request(
                "GET", path, query={"labelSelector": self.label_selector}
            )
        except KubeError as exc:
            if exc.status == 403 and namespace is None and not self.cluster_scoped:
                self.scoped = True
                log(
                    logger,
                    "informer.scoped",
                    logging.WARNING,
                    kind=self.kind,
                    note="a cluster-wide list is forbidden: watching namespace by namespace",
                )
                self.synced.set()
                self.signals.notify_all()  # waiters start the watches of their namespaces
                return None
            raise
        fresh = {self._key(item): item for item in listing.get("items") or []}
        mine = [key for key in self.objects if namespace is None or key[0] == namespace]
        for key in mine:
            if key not in fresh:
                gone = self._forget(key)
                if gone is not None:
                    self._tell("DELETED", gone, key)
        for key, item in fresh.items():
            before = self.objects.get(key)
            self._keep(key, item)
            if before is None:
                self._tell("ADDED", item, key)
            elif _version(before) != _version(item):  # unchanged ones are nobody's news
                self._tell("MODIFIED", item, key)
        self._recovered(namespace)
        if namespace is None:
            self.synced.set()
            self.signals.notify_all()
        else:
            self._covered[namespace].set()
            self.signals.notify(namespace)
        return (listing.get("metadata") or {}).get("resourceVersion")

    def _apply(self, kind: str, obj: Obj) -> None:
        key = self._key(obj)
        if kind == "DELETED":
            self._forget(key)
        else:
            self._keep(key, obj)
        self._tell(kind, obj, key)

    def _keep(self, key: Key, obj: Obj) -> None:
        self.objects[key] = obj
        self._by_namespace.setdefault(key[0], {})[key[1]] = obj

    def _forget(self, key: Key) -> Obj | None:
        gone = self.objects.pop(key, None)
        names = self._by_namespace.get(key[0])
        if names is not None:
            names.pop(key[1], None)
            if not names:
                del self._by_namespace[key[0]]
        return gone

    def _tell(self, kind: str, obj: Obj, key: Key) -> None:
        self.signals.notify(key[0])
        for listener in self._listeners:
            try:
                listener(kind, obj)
            except Exception:
                logger.exception("informer listener failed")

    def _key(self, obj: Obj) -> Key:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        return (name, name) if self.cluster_scoped else (str(meta.get("namespace")), name)

    def _recovered(self, scope: str | None) -> None:
        if self._failing.pop(scope, None) is not None:
            log(logger, "informer.recovered", kind=self.kind, namespace=scope)

    async def _failed(self, scope: str | None, failures: int, detail: str) -> int:
        since = self._failing.get(scope, (time.monotonic(), ""))[0]
        self._failing[scope] = (since, detail)
        log(
            logger,
            "informer.failed",
            logging.WARNING,
            kind=self.kind,
            namespace=scope,
            error=detail,
        )
        if scope is None:  # waiters look at failing_for()
            self.signals.notify_all()
        else:
            self.signals.notify(scope)
        await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
        return failures + 1


def _version(obj: Obj) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class Informers:
    """The informers of the kinds the console manages, and the signals they share."""

    def __init__(
        self, kube: KubeClient, kinds: list[str], idle_seconds: float = IDLE_SECONDS
    ) -> None:
        self.signals = Signals()
        self.by_kind = {
            kind: Informer(kube, kind, self.signals, idle_seconds=idle_seconds) for kind in kinds
        }

    def __getitem__(self, kind: str) -> Informer:
        return self.by_kind[kind]

    def start(self) -> None:
        for informer in self.by_kind.values():
            informer.start()

    async def close(self) -> None:
        await asyncio.gather(*(i.close() for i in self.by_kind.values()))

    @property
    def watches(self) -> int:
        return sum(i.watches for i in self.by_kind.values())

    def waiter(self, namespace: str, kinds: list[str], blind_limit: float) -> Waiter:
        """A `Waiter` on `namespace`; use it as `async with` (it unsubscribes on exit)."""
        return Waiter(self, namespace, [self.by_kind[kind] for kind in kinds], blind_limit)

    async def wait(
        self,
        namespace: str,
        check: Callable[[], T | None],
        wait_seconds: float,
        blind_limit: float,
        kinds: list[str],
    ) -> T | None:
        """Re-run `check` on every change in `namespace` until it returns something.

        None when `wait_seconds` run out; `ClusterUnavailable` once one of `kinds` has been
        unable to follow the cluster for `blind_limit` seconds.
        """
        try:
            async with asyncio.timeout(max(wait_seconds, 0.0)):
                async with self.waiter(namespace, kinds, blind_limit) as waiter:
                    while True:
                        await waiter.next()
                        value = check()
                        if value is not None:
                            return value
        except TimeoutError:
            return None


class Waiter:
    """Sleeps until something changes in one namespace, for the kinds it was given."""

    def __init__(
        self, informers: Informers, namespace: str, kinds: list[Informer], blind_limit: float
    ) -> None:
        self.informers = informers
        self.namespace = namespace
        self.kinds = kinds
        self.blind_limit = blind_limit
        self._event = informers.signals.subscribe(namespace)
        self._first = True

    async def __aenter__(self) -> Waiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.informers.signals.unsubscribe(self.namespace, self._event)

    async def next(self, within: float | None = None) -> None:
        """Return once the caches cover the namespace and, after the first call, once
        something in it changed or `within` seconds passed; `ClusterUnavailable` if a cache has
        been blind for `blind_limit` s."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        # a change seen is kept pending here and the event cleared at once: an event left
        # set while a kind does not yet cover the namespace would make the wait below
        # return without yielding, and the loop would spin
        pending = self._first
        while True:
            pending = pending or self._event.is_set()
            self._event.clear()
            for informer in self.kinds:
                informer.follow(self.namespace)
            blind = max(self.kinds, key=lambda i: i.failing_for(self.namespace))
            blind_for = blind.failing_for(self.namespace)
            if blind_for >= self.blind_limit:
                raise ClusterUnavailable(
                    f"The console lost its watch of the cluster's {blind.kind}s "
                    f"{blind_for:.0f} s ago ({blind.error_for(self.namespace)})."
                )
            timed_out = deadline is not None and loop.time() >= deadline
            if all(informer.covers(self.namespace) for informer in self.kinds):
                if pending or timed_out:
                    self._first = False
                    return
            elif timed_out:
                self._first = False
                return
            waits = []
            if deadline is not None:
                waits.append(deadline - loop.time())
            if blind_for > 0:
                waits.append(self.blind_limit - blind_for + 0.05)
            try:
                await asyncio.wait_for(self._event.wait(), max(0.0, min(waits)) if waits else None)
            except TimeoutError:
                pass
