"""A project's environment in the cluster: apply, scale, wait, delete.

Everything the lifecycle asks of Kubernetes goes through here. Waits read the shared
informers' caches (`informer.py`) and wake on their changes, never on fixed sleeps, so a
change is seen as soon as the API server reports it, and a hundred activations cost the API
server no more watches than one. What the caches show as already applied is not applied
again: the namespace and the agent's copies once per namespace (and again after any failure
in it), the Service and route when the cluster's copy no longer holds what the console
would apply. A warm activation costs the API server one request, the Deployment's apply.
Deletions, rarer and more careful, still follow their objects with their own list+watch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gooseui.cluster import manifests
from gooseui.cluster.agentenv import AgentEnvironment
from gooseui.cluster.client import (
    CALL_BUDGET,
    ClusterUnavailable,
    KubeClient,
    KubeError,
    TextStream,
    path_for,
)
from gooseui.cluster.informer import Informers
from gooseui.cluster.readiness import Obj, Verdict, evaluate
from gooseui.config import Settings

ProgressCallback = Callable[[Verdict], Awaitable[None]]
WATCH_SECONDS = 50
WATCH_RETRIES = 3
SYNC_SECONDS = 5.0  # how long a reader waits for a cache's first list before asking the API
# the namespace's guard rails and the agent's copies are applied again after this long even
# if nothing failed: one deleted behind the console's back (a NetworkPolicy, say) causes no
# failure that would say so
APPLIED_SECONDS = 300.0


class _Follower:
    """Keeps a dict of the objects a list+watch sees, and signals every change."""

    def __init__(
        self, kube: KubeClient, path: str, query: dict[str, str], changed: asyncio.Event
    ) -> None:
        self.kube = kube
        self.path = path
        self.query = query
        self.changed = changed
        self.objects: dict[str, Obj] = {}
        self.listed = False
        self.error: BaseException | None = None

    async def run(self) -> None:
        """Follow until cancelled; a failure is kept in `error` for the waiter to raise."""
        try:
            await self._follow()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc
            self.changed.set()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    async def _follow(self) -> None:
        version: str | None = None
        failures = 0
        while True:
            if version is None:
                listing = await self.kube.request("GET", self.path, query=self.query)
                self.objects = {
                    item["metadata"]["name"]: item for item in listing.get("items") or []
                }
                version = (listing.get("metadata") or {}).get("resourceVersion")
                self.listed = True
                self.changed.set()
            opened = time.monotonic()
            seen = 0
            try:
                async for event in self.kube.watch(
                    self.path,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    label_selector=self.query.get("labelSelector"),
                    field_selector=self.query.get("fieldSelector"),
                ):
                    seen += 1
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if event.get("type") == "DELETED":
                        self.objects.pop(name, None)
                    else:
                        self.objects[name] = obj
                    self.changed.set()
                failures = 0
            except KubeError as exc:
                if exc.status != 410:
                    raise
                version = None  # too old: list again, then watch from the new version
                continue
            except ClusterUnavailable:
                failures += 1  # a dropped connection: watch again, a few times, then give up
                if failures > WATCH_RETRIES:
                    raise
            if not seen and time.monotonic() - opened < 1.0:
                await asyncio.sleep(1.0)  # a proxy that ends watches at once must not spin us


class Environments:
    """Cluster operations on projects' objects."""

    def __init__(self, kube: KubeClient, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings
        kinds = ["Namespace", "Deployment", "Pod", "Service"]
        route = manifests.route_kind(settings)
        if route is not None:
            kinds.append(route)
        self.informers = Informers(kube, kinds)
        # (namespace, what) -> (its uid, digest of what was applied in it, when): the apply
        # is not repeated for APPLIED_SECONDS
        self._applied: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._inflight: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        # (kind, namespace, name) -> digest of this process's last apply of a Service/route
        self._applied_spec: dict[tuple[str, str, str], str] = {}
        # (namespace, name) -> the generation of this process's last apply of a Deployment
        self._applied_generation: dict[tuple[str, str], int] = {}

    def namespace(self, user_id: str) -> str:
        return manifests.namespace_name(self.settings, user_id)

    def start(self) -> None:
        """Start following the cluster (the informers' list+watch of each kind)."""
        self.informers.start()

    async def close(self) -> None:
        await self.informers.close()

    def forget(self, user_id: str) -> None:
        """Apply the namespace's objects again next time (after a failure in it)."""
        namespace = self.namespace(user_id)
        for key in [key for key in self._applied if key[0] == namespace]:
            del self._applied[key]
        for spec in [spec for spec in self._applied_spec if spec[1] == namespace]:
            del self._applied_spec[spec]

    # apply -----------------------------------------------------------------------------

    async def ensure_namespace(self, user_id: str, wait_seconds: float = 60.0) -> None:
        """Apply the namespace and its guard rails, after a terminating one is gone."""
        objects = manifests.render_namespace(self.settings, user_id)
        await self._once(
            user_id, "namespace", objects, self._apply_namespace(user_id, objects, wait_seconds)
        )

    async def _apply_namespace(self, user_id: str, objects: list[Obj], wait_seconds: float) -> None:
        """Apply the Namespace; one that is terminating is waited out and applied again
        (nothing can be created in it until it is gone), then its guard rails."""
        name = self.namespace(user_id)
        deadline = time.monotonic() + wait_seconds
        while True:
            applied = await self.kube.apply(objects[0])
            if not (applied.get("metadata") or {}).get("deletionTimestamp"):
                break
            if time.monotonic() > deadline:
                raise KubeError(409, "Conflict", f"namespace {name} is still being deleted")
            await self._wait_deleted(path_for("Namespace"), name, deadline - time.monotonic())
        for obj in objects[1:]:
            await self.kube.apply(obj)

    async def apply_agent(self, user_id: str, agent: AgentEnvironment) -> None:
        """Apply the namespace's copies of the agent's environment, pull secret and config."""
        objects = manifests.render_agent(
            self.settings, user_id, agent.encoded(), agent.source, agent.config, agent.pull_secret
        )
        await self._once(user_id, "agent", objects, self._apply_all(objects))

    async def _apply_all(self, objects: list[Obj]) -> None:
        for obj in objects:
            await self.kube.apply(obj)

    async def _once(
        self, user_id: str, what: str, objects: list[Obj], work: Awaitable[None]
    ) -> None:
        """Run `work` unless the same objects were applied in the namespace as it is now
        (same uid); concurrent callers share one run."""
        namespace = self.namespace(user_id)
        key = (namespace, what)
        digest = _digest(objects)
        uid = self._namespace_uid(namespace)
        applied = self._applied.get(key)
        if (
            uid is not None
            and applied is not None
            and applied[:2] == (uid, digest)
            and time.monotonic() - applied[2] < APPLIED_SECONDS
        ):
            if asyncio.iscoroutine(work):
                work.close()
            return
        flight = (namespace, what, digest)  # a newer agent environment does not share a run
        task = self._inflight.get(flight)
        if task is None:

            async def run() -> None:
                await work
                made = self._namespace_uid(namespace) or await self._read_namespace_uid(namespace)
                if made is not None:
                    self._applied[key] = (made, digest, time.monotonic())

            task = self._inflight[flight] = asyncio.create_task(run())
            task.add_done_callback(lambda _: self._inflight.pop(flight, None))
        elif asyncio.iscoroutine(work):
            work.close()
        await asyncio.shield(task)

    def _namespace_uid(self, namespace: str) -> str | None:
        """The uid of the namespace as the cache has it, if it is there and not terminating."""
        namespaces = self.informers["Namespace"]
        if not namespaces.covers(namespace):
            return None
        current = namespaces.get(namespace, namespace)
        meta = (current or {}).get("metadata") or {}
        if not current or meta.get("deletionTimestamp"):
            return None
        return meta.get("uid")

    async def _read_namespace_uid(self, namespace: str) -> str | None:
        current = await self.kube.get(path_for("Namespace", name=namespace))
        return ((current or {}).get("metadata") or {}).get("uid")

    async def apply_project(
        self,
        user_id: str,
        project_id: str,
        replicas: int,
        checksum: str | None = None,
        model: str | None = None,
    ) -> int:
        """Apply the Deployment, Service and route; the replica count is always part of it.

        The Service and route are applied only when the cluster's copies do not hold what
        would be applied. Returns the Deployment's generation, for `wait_ready`.
        """
        objects = manifests.render_project(
            self.settings, user_id, project_id, replicas, checksum, model
        )
        applied = await self.kube.apply(objects[0])
        generation = self._applied_generation[
            (self.namespace(user_id), objects[0]["metadata"]["name"])
        ] = generation_of(applied)
        for obj in objects[1:]:
            informer = self.informers.by_kind.get(obj["kind"])
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            spec_key = (obj["kind"], namespace, name)
            digest = _digest([obj])
            if (
                informer is not None
                and informer.covers(namespace)
                and not informer.failing_for(namespace)
                # this process applied exactly this (a field dropped from the template
                # would not show in `_holds`), and the cluster's copy still holds it
                and self._applied_spec.get(spec_key) == digest
                and _holds(informer.get(namespace, name), obj)
            ):
                continue
            await self.kube.apply(obj)
            self._applied_spec[spec_key] = digest
        return generation

    async def scale(self, user_id: str, project_id: str, replicas: int) -> None:
        """Scale by applying the Deployment with the new count (no fight over ownership).

        The pod template keeps the agent environment's checksum it has, so that a scale is
        only a scale: no new ReplicaSet, no rollout. A Deployment that is not there needs no
        scaling to 0, and is not created for it.
        """
        namespace = self.namespace(user_id)
        name = manifests.object_name(project_id)
        current = self._cached_deployment(namespace, name)
        if current is None:  # not in the cache, or older there than what was applied
            current = await self.kube.get(path_for("Deployment", namespace, name))
        if current is None and replicas == 0:
            return
        annotations = (
            (((current or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
        ).get("annotations") or {}
        checksum = annotations.get(manifests.CHECKSUM_ANNOTATION)
        # the model it runs with, too: a scale that dropped it would roll the pods
        deployment = manifests.render_deployment(
            self.settings, user_id, project_id, replicas, checksum, model_of(current)
        )
        self._applied_generation[(namespace, name)] = generation_of(
            await self.kube.apply(deployment)
        )

    def _cached_deployment(self, namespace: str, name: str) -> Obj | None:
        """The cache's copy of a Deployment, if it is at least as new as this process's last
        apply of it; None when the API server must be asked."""
        deployments = self.informers["Deployment"]
        if not deployments.covers(namespace):
            return None
        cached = deployments.get(namespace, name)
        if cached is None or generation_of(cached) < self._applied_generation.get(
            (namespace, name), 0
        ):
            return None
        return cached

    # wait ------------------------------------------------------------------------------

    async def wait_ready(
        self,
        user_id: str,
        project_id: str,
        on_progress: ProgressCallback,
        unschedulable_grace: float = 0.0,
        generation: int = 0,
    ) -> Verdict:
        """Follow the Deployment (at `generation` or later) and its pods until ready or
        failed (the caller bounds time)."""
        namespace = self.namespace(user_id)
        name = manifests.object_name(project_id)
        deployments, pods = self.informers["Deployment"], self.informers["Pod"]
        selector = manifests.selector_labels(project_id)
        last_progress: tuple[str, str] | None = None
        unschedulable_since: float | None = None
        async with self.informers.waiter(namespace, ["Deployment", "Pod"], CALL_BUDGET) as waiter:
            wake: float | None = None
            while True:
                await waiter.next(wake)
                deployment = deployments.get(namespace, name)
                if deployment is not None and generation_of(deployment) < generation:
                    deployment = None  # the cache has not seen the apply yet
                pod_list = pods.select(namespace, selector)
                verdict = evaluate(deployment, pod_list, 1, unschedulable_is_failure=False)
                if unschedulable_since is None and verdict.step == "unschedulable":
                    unschedulable_since = time.monotonic()
                wake = None
                if unschedulable_since is not None:
                    left = unschedulable_since + unschedulable_grace - time.monotonic()
                    if left <= 0:
                        verdict = evaluate(deployment, pod_list, 1, unschedulable_is_failure=True)
                    else:
                        wake = left + 0.01
                if verdict.ready or verdict.failed:
                    return verdict
                if (verdict.step, verdict.progress) != last_progress:
                    last_progress = (verdict.step, verdict.progress)
                    await on_progress(verdict)

    async def wait_route_accepted(
        self, user_id: str, project_id: str, wait_seconds: float
    ) -> tuple[bool, str]:
        """Whether the Gateway accepted the project's HTTPRoute, and what it said.

        A gateway controller writes `status.parents[]` for every Gateway of its own that a
        route names; a route nobody writes about names a Gateway no controller serves.
        """
        namespace = self.namespace(user_id)
        name = manifests.object_name(project_id)
        gateway = self.settings.gateway_name or ""
        gateway_ns = self.settings.gateway_namespace or namespace
        routes = self.informers["HTTPRoute"]

        def decided() -> tuple[bool, str] | None:
            route = routes.get(namespace, name)
            for parent in ((route or {}).get("status") or {}).get("parents") or []:
                ref = parent.get("parentRef") or {}
                if ref.get("name") != gateway or (ref.get("namespace") or namespace) != gateway_ns:
                    continue
                for condition in parent.get("conditions") or []:
                    if condition.get("type") != "Accepted":
                        continue
                    generation = (route or {}).get("metadata", {}).get("generation")
                    observed = condition.get("observedGeneration")
                    if generation and observed and observed < generation:
                        continue  # about an older version of the route
                    if condition.get("status") == "True":
                        return (True, "")
                    return (
                        False,
                        f"The Gateway {gateway_ns}/{gateway} did not accept the route "
                        f"{name} ({condition.get('reason') or 'no reason'}): "
                        f"{condition.get('message') or 'no message'}",
                    )
            return None

        verdict = await self.informers.wait(
            namespace, decided, wait_seconds, CALL_BUDGET, ["HTTPRoute"]
        )
        if verdict is not None:
            return verdict
        return (
            False,
            f"No controller of the Gateway {gateway_ns}/{gateway} accepted the route {name} "
            f"within {wait_seconds:g} s: check that the Gateway exists and its controller runs "
            "(kubectl get gateway -A).",
        )

    async def wait_pods_gone(self, user_id: str, project_id: str, wait_seconds: float) -> bool:
        """True once the project has no pods left; False when `wait_seconds` ran out."""
        namespace = self.namespace(user_id)
        pods = self.informers["Pod"]
        selector = manifests.selector_labels(project_id)
        gone = await self.informers.wait(
            namespace,
            lambda: True if not pods.select(namespace, selector) else None,
            wait_seconds,
            CALL_BUDGET,
            ["Pod"],
        )
        return bool(gone)

    async def _wait_deleted(self, collection: str, name: str, wait_seconds: float) -> bool:
        changed = asyncio.Event()
        follower = _Follower(
            self.kube, collection, {"fieldSelector": f"metadata.name={name}"}, changed
        )
        return await self._until(
            follower, lambda: name not in follower.objects, changed, wait_seconds
        )

    @staticmethod
    async def _until(
        follower: _Follower, done: Callable[[], bool], changed: asyncio.Event, wait_seconds: float
    ) -> bool:
        task = asyncio.create_task(follower.run())
        try:
            async with asyncio.timeout(max(wait_seconds, 0.0)):
                while True:
                    await changed.wait()
                    changed.clear()
                    follower.check()
                    if follower.listed and done():
                        return True
        except TimeoutError:
            return False
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # delete ----------------------------------------------------------------------------

    async def delete_project(self, user_id: str, project_id: str, wait_seconds: float) -> bool:
        """Delete route, Service and Deployment (its pods with it); True once all are gone."""
        namespace = self.namespace(user_id)
        name = manifests.object_name(project_id)
        deadline = time.monotonic() + wait_seconds
        configured = manifests.route_kind(self.settings)
        deleted = []
        for kind in ["Ingress", "HTTPRoute", "Service", "Deployment"]:
            try:
                if await self.kube.delete(path_for(kind, namespace, name)):
                    deleted.append(kind)
            except KubeError as exc:
                # a route kind the settings do not use (left from an earlier setting) is tidied
                # when possible; a cluster without the Gateway API, or RBAC without that
                # resource, answers 404 or 403 for it, which is no reason to fail the delete
                unused_route = kind in ("Ingress", "HTTPRoute") and kind != configured
                if not (unused_route and exc.status in (403, 404)):
                    raise
        for kind in deleted:
            if not await self._wait_deleted(
                path_for(kind, namespace), name, deadline - time.monotonic()
            ):
                return False
        return await self.wait_pods_gone(user_id, project_id, deadline - time.monotonic())

    async def delete_namespace(self, user_id: str) -> bool:
        """Delete the user's namespace if the console made it (it carries our label)."""
        path = path_for("Namespace", name=self.namespace(user_id))
        current = await self.kube.get(path)
        labels = ((current or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(manifests.LABEL_MANAGED_BY) != manifests.MANAGER:
            return False
        self.forget(user_id)  # the next activation makes it again, whatever the cache says
        return await self.kube.delete(path, propagation="Background")

    # read ------------------------------------------------------------------------------

    async def get_route(self, user_id: str, project_id: str) -> Obj | None:
        kind = manifests.route_kind(self.settings)
        if kind is None:
            return None
        namespace = self.namespace(user_id)
        name = manifests.object_name(project_id)
        routes = self.informers[kind]
        if routes.covers(namespace) and routes.get(namespace, name) is not None:
            return routes.get(namespace, name)
        try:
            return await self.kube.get(path_for(kind, namespace, name))
        except KubeError:
            return None

    async def read_deployment(self, user_id: str, project_id: str) -> Obj | None:
        """The project's Deployment as the API server has it now (not the cache)."""
        return await self.kube.get(
            path_for("Deployment", self.namespace(user_id), manifests.object_name(project_id))
        )

    async def list_managed_deployments(self) -> list[Obj]:
        """Every Deployment the console manages, in all namespaces (from the cache once it
        has listed them cluster-wide; else from the API server, which may refuse)."""
        deployments = self.informers["Deployment"]
        try:
            async with asyncio.timeout(SYNC_SECONDS):
                await deployments.synced.wait()
        except TimeoutError:
            pass
        if deployments.synced.is_set() and not deployments.scoped:
            if deployments.failing_for() < CALL_BUDGET:
                return list(deployments.items())
        listing = await self.kube.list("/apis/apps/v1/deployments", manifests.MANAGED_SELECTOR)
        return list(listing.get("items") or [])

    # diagnostics -----------------------------------------------------------------------

    async def project_pod(self, user_id: str, project_id: str) -> Obj | None:
        """The project's newest pod that is not terminating (else the newest terminating
        one, whose log can still be read), or None: from the cache while it follows the
        namespace, else from the API server."""
        namespace = self.namespace(user_id)
        pods = self.informers["Pod"]
        if pods.covers(namespace) and not pods.failing_for(namespace):
            found = pods.select(namespace, {manifests.LABEL_PROJECT: project_id})
        else:
            listing = await self.kube.list(
                path_for("Pod", namespace), f"{manifests.LABEL_PROJECT}={project_id}"
            )
            found = list(listing.get("items") or [])
        return newest_pod(found)

    def _log_path(self, user_id: str, pod: str) -> str:
        return path_for("Pod", self.namespace(user_id), pod) + "/log"

    async def read_log(
        self,
        user_id: str,
        pod: str,
        *,
        container: str = manifests.CONTAINER_NAME,
        tail: int | None = None,
        previous: bool = False,
        timestamps: bool = False,
    ) -> str:
        """A container's log through the `pods/{name}/log` subresource (the API server's
        400 for a container that has not started, or has no previous instance, raises
        `KubeError`)."""
        return await self.kube.get_text(
            self._log_path(user_id, pod),
            query={
                "container": container,
                "tailLines": tail,
                "previous": previous or None,
                "timestamps": timestamps or None,
            },
        )

    async def follow_log(
        self,
        user_id: str,
        pod: str,
        *,
        container: str = manifests.CONTAINER_NAME,
        tail: int | None = None,
        timestamps: bool = False,
        previous: bool = False,
    ) -> TextStream:
        """Open a container's log as it writes it (`follow=true`): the last `tail` lines,
        then each new one, until the container instance ends or the caller closes the
        stream (which closes the connection; a previous instance has ended: its lines, then
        the end). Refusals raise `KubeError` here."""
        return await self.kube.open_lines(
            self._log_path(user_id, pod),
            query={
                "container": container,
                "follow": True,
                "previous": previous or None,
                "tailLines": tail,
                "timestamps": timestamps or None,
            },
        )

    async def project_events(self, user_id: str, project_id: str) -> list[Obj]:
        """The core/v1 Events of the user's namespace about the project's objects: its
        Deployment, Service and route (named `proj-<pid>-api`), its ReplicaSets and its
        pods (named after the Deployment), those gone included.

        Field selectors match exact names only and the pods of a failed activation are
        deleted by the time an operator asks, so the namespace's events are listed and
        sorted here by `involvedObject`.
        """
        namespace = self.namespace(user_id)
        listing = await self.kube.request("GET", path_for("Event", namespace))
        name = manifests.object_name(project_id)
        return [
            event
            for event in listing.get("items") or []
            if is_project_object(event.get("involvedObject") or {}, namespace, name)
        ]

    async def quotas(self, user_id: str) -> list[Obj]:
        """The ResourceQuotas of the user's namespace, with what is used of each."""
        listing = await self.kube.request("GET", path_for("ResourceQuota", self.namespace(user_id)))
        return list(listing.get("items") or [])


def model_of(deployment: Obj | None) -> str | None:
    """The project's own GOOSE_MODEL in a Deployment's agent container, if it has one."""
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    for container in (template.get("spec") or {}).get("containers") or []:
        if container.get("name") != manifests.CONTAINER_NAME:
            continue
        for entry in container.get("env") or []:
            if entry.get("name") == "GOOSE_MODEL" and "value" in entry:
                return str(entry["value"])
    return None


def replicas_of(deployment: Obj | None) -> int:
    return int(((deployment or {}).get("spec") or {}).get("replicas") or 0)


# the alphabet of generated suffixes (pod-template-hash, generateName): no vowels, so a
# suffix never spells `-api` and one project's generated names never look like another's
_GENERATED = frozenset("bcdfghjklmnpqrstvwxz2456789-")
_NAMED_KINDS = frozenset({"Deployment", "Service", "Ingress", "HTTPRoute"})
_GENERATED_KINDS = frozenset({"ReplicaSet", "Pod"})


def is_project_object(ref: Obj, namespace: str, name: str) -> bool:
    """Whether an `involvedObject` reference names one of the project's objects: `name`
    itself (Deployment, Service, route), or a ReplicaSet or pod generated from it
    (`<name>-<hash>`, `<name>-<hash>-<suffix>`)."""
    if ref.get("namespace") not in (None, "", namespace):
        return False
    kind, ref_name = ref.get("kind"), str(ref.get("name") or "")
    if kind in _NAMED_KINDS:
        return ref_name == name
    if kind in _GENERATED_KINDS and ref_name.startswith(name + "-"):
        rest = ref_name[len(name) + 1 :]
        return bool(rest) and set(rest) <= _GENERATED
    return False


def newest_pod(pods: list[Obj]) -> Obj | None:
    """The newest pod that is not terminating, else the newest terminating one."""
    if not pods:
        return None

    def age(pod: Obj) -> tuple[bool, str, str]:
        meta = pod.get("metadata") or {}
        return (
            not meta.get("deletionTimestamp"),
            str(meta.get("creationTimestamp") or ""),
            str(meta.get("name") or ""),
        )

    return max(pods, key=age)


def generation_of(obj: Obj | None) -> int:
    return int(((obj or {}).get("metadata") or {}).get("generation") or 0)


def _digest(objects: list[Obj]) -> str:
    return hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()


def _holds(actual: Any, desired: Any) -> bool:
    """Whether the cluster's copy `actual` has every field of `desired` as it would be
    applied (the API server adds defaults: those are ignored, not compared)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            key in actual and _holds(actual[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(_holds(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return bool(actual == desired)
