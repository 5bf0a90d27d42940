"""A project's environment in the cluster: apply, scale, wait, delete.

Everything the lifecycle asks of Kubernetes goes through here. Waiting is done with a
list followed by a watch (re-listing on 410 Gone), never with fixed sleeps, so a change is
seen as soon as the API server reports it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from gooseui.cluster import manifests
from gooseui.cluster.agentenv import AgentEnvironment
from gooseui.cluster.client import ClusterUnavailable, KubeClient, KubeError, path_for
from gooseui.cluster.readiness import Obj, Verdict, evaluate
from gooseui.config import Settings

ProgressCallback = Callable[[Verdict], Awaitable[None]]
WATCH_SECONDS = 50
WATCH_RETRIES = 3


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

    def namespace(self, user_id: str) -> str:
        return manifests.namespace_name(self.settings, user_id)

    # apply -----------------------------------------------------------------------------

    async def ensure_namespace(self, user_id: str, wait_seconds: float = 60.0) -> None:
        """Apply the namespace and its guard rails, after a terminating one is gone."""
        name = self.namespace(user_id)
        deadline = time.monotonic() + wait_seconds
        while True:
            current = await self.kube.get(path_for("Namespace", name=name))
            if not current or not current["metadata"].get("deletionTimestamp"):
                break
            if time.monotonic() > deadline:
                raise KubeError(409, "Conflict", f"namespace {name} is still being deleted")
            await self._wait_deleted(path_for("Namespace"), name, deadline - time.monotonic())
        for obj in manifests.render_namespace(self.settings, user_id):
            await self.kube.apply(obj)

    async def apply_agent(self, user_id: str, agent: AgentEnvironment) -> None:
        """Apply the namespace's copies of the agent's environment, pull secret and config."""
        objects = manifests.render_agent(
            self.settings, user_id, agent.encoded(), agent.source, agent.config, agent.pull_secret
        )
        for obj in objects:
            await self.kube.apply(obj)

    async def apply_project(
        self, user_id: str, project_id: str, replicas: int, checksum: str | None = None
    ) -> None:
        """Apply the Deployment, Service and route; the replica count is always part of it."""
        objects = manifests.render_project(self.settings, user_id, project_id, replicas, checksum)
        for obj in objects:
            await self.kube.apply(obj)

    async def scale(self, user_id: str, project_id: str, replicas: int) -> None:
        """Scale by applying the Deployment with the new count (no fight over ownership).

        The pod template keeps the agent environment's checksum it has, so that a scale is
        only a scale: no new ReplicaSet, no rollout. A Deployment that is not there needs no
        scaling to 0, and is not created for it.
        """
        namespace = self.namespace(user_id)
        name = manifests.object_name(project_id)
        current = await self.kube.get(path_for("Deployment", namespace, name))
        if current is None and replicas == 0:
            return
        annotations = (
            (((current or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
        ).get("annotations") or {}
        checksum = annotations.get(manifests.CHECKSUM_ANNOTATION)
        deployment = manifests.render_project(
            self.settings, user_id, project_id, replicas, checksum
        )[0]
        await self.kube.apply(deployment)

    # wait ------------------------------------------------------------------------------

    async def wait_ready(
        self,
        user_id: str,
        project_id: str,
        on_progress: ProgressCallback,
        unschedulable_grace: float = 0.0,
    ) -> Verdict:
        """Follow the Deployment and its pods until ready or failed (the caller bounds time)."""
        namespace = self.namespace(user_id)
        name = manifests.object_name(project_id)
        changed = asyncio.Event()
        deployments = _Follower(
            self.kube,
            path_for("Deployment", namespace),
            {"fieldSelector": f"metadata.name={name}"},
            changed,
        )
        pods = _Follower(
            self.kube,
            path_for("Pod", namespace),
            {"labelSelector": manifests.pod_selector(project_id)},
            changed,
        )
        last_progress: tuple[str, str] | None = None
        unschedulable_since: float | None = None
        tasks = [asyncio.create_task(deployments.run()), asyncio.create_task(pods.run())]
        try:
            while True:
                wake = None
                if unschedulable_since is not None:
                    wake = (
                        max(0.0, unschedulable_since + unschedulable_grace - time.monotonic())
                        + 0.01
                    )
                try:
                    await asyncio.wait_for(changed.wait(), wake)
                except TimeoutError:
                    pass
                changed.clear()
                deployments.check()
                pods.check()
                if not (deployments.listed and pods.listed):
                    continue
                deployment = deployments.objects.get(name)
                pod_list = list(pods.objects.values())
                verdict = evaluate(deployment, pod_list, 1, unschedulable_is_failure=False)
                if unschedulable_since is None and verdict.step == "unschedulable":
                    unschedulable_since = time.monotonic()
                if (
                    unschedulable_since is not None
                    and time.monotonic() >= unschedulable_since + unschedulable_grace
                ):
                    verdict = evaluate(deployment, pod_list, 1, unschedulable_is_failure=True)
                if verdict.ready or verdict.failed:
                    return verdict
                if (verdict.step, verdict.progress) != last_progress:
                    last_progress = (verdict.step, verdict.progress)
                    await on_progress(verdict)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

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
        changed = asyncio.Event()
        routes = _Follower(
            self.kube,
            path_for("HTTPRoute", namespace),
            {"fieldSelector": f"metadata.name={name}"},
            changed,
        )
        verdict: list[tuple[bool, str]] = []

        def decided() -> bool:
            route = routes.objects.get(name)
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
                        verdict.append((True, ""))
                    else:
                        verdict.append(
                            (
                                False,
                                f"The Gateway {gateway_ns}/{gateway} did not accept the route "
                                f"{name} ({condition.get('reason') or 'no reason'}): "
                                f"{condition.get('message') or 'no message'}",
                            )
                        )
                    return True
            return False

        if await self._until(routes, decided, changed, wait_seconds):
            return verdict[-1]
        return (
            False,
            f"No controller of the Gateway {gateway_ns}/{gateway} accepted the route {name} "
            f"within {wait_seconds:g} s: check that the Gateway exists and its controller runs "
            "(kubectl get gateway -A).",
        )

    async def wait_pods_gone(self, user_id: str, project_id: str, wait_seconds: float) -> bool:
        """True once the project has no pods left; False when `wait_seconds` ran out."""
        namespace = self.namespace(user_id)
        changed = asyncio.Event()
        pods = _Follower(
            self.kube,
            path_for("Pod", namespace),
            {"labelSelector": manifests.pod_selector(project_id)},
            changed,
        )
        return await self._until(pods, lambda: not pods.objects, changed, wait_seconds)

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
        return await self.kube.delete(path, propagation="Background")

    # read ------------------------------------------------------------------------------

    async def get_route(self, user_id: str, project_id: str) -> Obj | None:
        kind = manifests.route_kind(self.settings)
        if kind is None:
            return None
        try:
            return await self.kube.get(
                path_for(kind, self.namespace(user_id), manifests.object_name(project_id))
            )
        except KubeError:
            return None

    async def list_managed_deployments(self) -> list[Obj]:
        """Every Deployment the console manages, in all namespaces."""
        listing = await self.kube.list("/apis/apps/v1/deployments", manifests.MANAGED_SELECTOR)
        return list(listing.get("items") or [])


def replicas_of(deployment: Obj | None) -> int:
    return int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
