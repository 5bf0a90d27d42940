"""Project environments switched on and off (DESIGN section 4).

Every transition is a compare-and-set in MongoDB, so two requests cannot both start one.
The cluster work of a transition runs in a task of its own: a caller that goes away (a
closed browser, a dropped HTTP request) does not leave a project stuck half-way; callers
that wait share the task's outcome. Failures are classified, the Deployment is scaled back
to 0, and the project keeps a reason code and a message for the operator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from secrets import token_hex
from typing import Any

from gooseui.cluster import manifests
from gooseui.cluster.agentenv import (
    AgentEnvironment,
    AgentEnvSource,
    AgentMisconfigured,
    redact,
)
from gooseui.cluster.client import ClusterUnavailable, KubeError
from gooseui.cluster.endpoints import candidates
from gooseui.cluster.environment import Environments
from gooseui.cluster.readiness import Verdict
from gooseui.config import Settings, env_name
from gooseui.errors import Conflict, GooseUIError, UpstreamFailed, UpstreamTimeout
from gooseui.events import EventBus, ProjectEvent
from gooseui.goose import GooseClient, GooseUnreachable
from gooseui.logs import log
from gooseui.models import Project, Status, Step
from gooseui.store import LEASE_SECONDS, ProjectStore, now

logger = logging.getLogger("gooseui.lifecycle")

# a gateway controller writes a route's status within seconds; none at all means no
# controller owns the Gateway the route names
ROUTE_ACCEPT_SECONDS = 30.0
SCALE_DOWN_SECONDS = 60.0
DELETE_SECONDS = 120.0


def replica_id() -> str:
    """This process among the console's replicas: host (the pod's name), pid, and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{token_hex(2)}"


class Failure(Exception):
    """A classified failure of a transition: reason code and operator text."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def to_error(self) -> GooseUIError:
        if self.reason == "ClusterUnavailable":
            return ClusterUnavailable(self.message)
        if self.reason == "Timeout":
            return UpstreamTimeout(self.message, code="Timeout")
        return UpstreamFailed(self.message, code=self.reason)


def classify(exc: BaseException) -> Failure:
    """Name what went wrong in a cluster call."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, AgentMisconfigured):
        return Failure("AgentMisconfigured", exc.message)
    if isinstance(exc, ClusterUnavailable):
        return Failure("ClusterUnavailable", exc.detail)
    if isinstance(exc, KubeError):
        if exc.status in (401, 403):
            return Failure(
                "Forbidden",
                f"The console's Kubernetes credentials were refused "
                f"({exc.status} {exc.reason}): {exc.message}",
            )
        return Failure(
            "ClusterError",
            f"The Kubernetes API refused a request ({exc.status} {exc.reason}): {exc.message}",
        )
    if isinstance(exc, GooseUnreachable):
        return Failure("Timeout" if exc.timeout else "HealthCheckFailed", exc.message)
    return Failure("InternalError", f"{type(exc).__name__}: {exc}")


class Lifecycle:
    """Activation, deactivation and deletion of project environments."""

    def __init__(
        self,
        settings: Settings,
        store: ProjectStore,
        bus: EventBus,
        environments: Environments | None,
        goose: GooseClient | None,
        cluster_problem: str | None = None,
        agent_env: AgentEnvSource | None = None,
        replica: str | None = None,
    ) -> None:
        # who owns the work on a project, in its document's lease (several replicas may run)
        self.replica = replica or replica_id()
        self.settings = settings
        self.store = store
        self.bus = bus
        self.environments = environments
        self.goose = goose
        self.agent_env = agent_env
        self.cluster_problem = cluster_problem
        self._tasks: dict[tuple[str, str], asyncio.Task[Project]] = {}
        self._background: set[asyncio.Task[None]] = set()  # best-effort clean-ups
        self._renewer: asyncio.Task[None] | None = None
        # a transition asked for and not yet started (its compare-and-set is under way), or
        # an activation being cancelled: a reconciliation pass must not take it for one
        # nobody works on
        self._claimed: set[tuple[str, str]] = set()
        self._cancelling: set[tuple[str, str]] = set()

    # plumbing --------------------------------------------------------------------------

    @staticmethod
    def event(
        project: Project | dict[str, Any],
        status: str,
        step: Step,
        message: str,
        reason: str | None = None,
    ) -> ProjectEvent:
        user_id = project.user_id if isinstance(project, Project) else project["user_id"]
        project_id = project.project_id if isinstance(project, Project) else project["project_id"]
        return ProjectEvent(user_id, project_id, str(status), str(step), message, reason)

    def publish(
        self,
        project: Project | dict[str, Any],
        status: str,
        step: Step,
        message: str,
        reason: str | None = None,
    ) -> None:
        self.emit(self.event(project, status, step, message, reason))

    def emit(self, event: ProjectEvent) -> None:
        self.bus.publish(event)
        log(
            logger,
            "project.event",
            user_id=event.user_id,
            project_id=event.project_id,
            status=event.status,
            step=event.step,
            message=event.message,
            reason=event.reason,
        )

    def _timeline(self, last: ProjectEvent) -> list[dict[str, Any]]:
        """The transition's steps, stored with its last write (`last` is its final step):
        a reload, another replica or a restarted console shows them from MongoDB."""
        seen = self.bus.timelines.of(last.user_id, last.project_id)
        return [event.to_json() for event in (*seen, last)]

    def _envs(self) -> Environments:
        if self.environments is None:
            raise ClusterUnavailable(self.cluster_problem or "No Kubernetes cluster is configured.")
        return self.environments

    def _start(
        self, project: Project, work: Coroutine[Any, Any, Project], kind: str
    ) -> asyncio.Task[Project]:
        key = (project.user_id, project.project_id)
        task = asyncio.create_task(self._leased(project, work), name=f"{kind} {key}")
        self._tasks[key] = task

        def done(finished: asyncio.Task[Project]) -> None:
            if self._tasks.get(key) is finished:
                del self._tasks[key]
            if not finished.cancelled():
                finished.exception()  # retrieved: a caller that did not wait is not warned

        task.add_done_callback(done)
        return task

    async def _leased(self, project: Project, work: Coroutine[Any, Any, Project]) -> Project:
        """Run a transition's work; its lease is renewed meanwhile (with all the others)."""
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="lease renewer")
        return await work

    async def _renew(self) -> None:
        """Every LEASE_SECONDS/3, one write renews the leases of all running transitions."""
        while self._tasks:
            await asyncio.sleep(LEASE_SECONDS / 3)
            running = dict(self._tasks)
            try:
                lost = await self.store.renew_leases(self.replica, list(running))
                lost = {key for key in lost if await self._taken_over(key, running[key])}
            except GooseUIError:
                continue  # MongoDB blipped: renew again; a lease may lapse meanwhile
            for uid, pid in lost:
                # another replica took the work over (this one could not renew in time):
                # this one's last write will fail, and say so
                log(logger, "project.lease_lost", logging.WARNING, user_id=uid, project_id=pid)

    async def _taken_over(self, key: tuple[str, str], task: asyncio.Task[Project]) -> bool:
        """Whether a lease found lost was taken, not given up by its transition's last write
        (which releases it) while the renewal was under way."""
        if task.done() or self._tasks.get(key) is not task:
            return False
        doc = await self.store.get(*key)
        return doc is not None and Status(doc["status"]).in_transition

    async def _outcome(self, task: asyncio.Task[Project], wait: bool, started: Project) -> Project:
        if not wait:
            return started
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and not (current and current.cancelling()):
                # the transition was cancelled (an operator stopped the activation), not
                # this caller: say so instead of vanishing
                raise Conflict(
                    f"The activation of {started.name!r} was cancelled.", code="Cancelled"
                ) from None
            raise

    async def _transition(
        self,
        project: Project,
        allowed: list[Status],
        target: Status,
        changes: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
    ) -> Project:
        """The compare-and-set of a transition (`where`: more fields it expects as given).

        The project counts as worked on (`running`) while the write is under way: between
        the write and the task's start a pass would otherwise see a transition with no
        task, and start a second one."""
        key = (project.user_id, project.project_id)
        if key in self._claimed:
            raise Conflict(
                f"Project {project.name!r} is being changed; wait until it settles.",
                code="InTransition",
            )
        self._claimed.add(key)
        try:
            doc = await self.store.compare_and_set(
                project.user_id,
                project.project_id,
                allowed,
                {"status": str(target), **(changes or {})},
                holder=self.replica,
                # a transition is owned while it runs; a settled status is owned by nobody
                lease="take" if target.in_transition else "free",
                where=where,
            )
        finally:
            self._claimed.discard(key)
        if doc is None:
            current = await self.store.get(project.user_id, project.project_id)
            status = current["status"] if current else "deleted"
            raise Conflict(
                f"Project {project.name!r} is {status}; it cannot go {target} now.",
                code="InTransition",
            )
        return Project.from_document(doc)

    async def _fail(
        self, project: Project, from_status: Status, failure: Failure, prefix: str = ""
    ) -> None:
        message = prefix + failure.message
        event = self.event(project, Status.FAILED, Step.FAILED, message, failure.reason)
        doc = await self.store.compare_and_set(
            project.user_id,
            project.project_id,
            [from_status],
            {
                "status": str(Status.FAILED),
                "status_reason": failure.reason,
                "status_message": message,
                "desired_replicas": 0,
                "endpoint": None,
                "timeline": self._timeline(event),
            },
            holder=self.replica,
            lease="release",
        )
        if doc is not None:
            self.emit(event)

    async def close(self) -> None:
        """Cancel running transitions and give up their leases.

        The status stays as it was (`activating`, say): another replica, or this console
        started again, resumes the work at its next pass instead of waiting out the lease.
        """
        keys = list(self._tasks)
        tasks: list[asyncio.Task[Any]] = [*self._tasks.values(), *self._background]
        if self._renewer is not None:
            tasks.append(self._renewer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        transitional = [s for s in Status if s.in_transition]
        for uid, pid in keys:
            try:
                async with asyncio.timeout(2):
                    await self.store.compare_and_set(
                        uid, pid, transitional, {}, holder=self.replica, lease="release"
                    )
            except Exception as exc:  # MongoDB gone too: the lease lapses on its own
                log(logger, "project.lease_kept", user_id=uid, project_id=pid, error=str(exc))

    def running(self, user_id: str, project_id: str) -> bool:
        key = (user_id, project_id)
        return key in self._tasks or key in self._claimed or key in self._cancelling

    def _stale(self, project: Project) -> list[Status]:
        """A transitional status no task of this process is working on: it may be taken over.

        Start-up reconciliation settles what a previous process left; this covers a task of
        this process that could not write its last status (MongoDB briefly unavailable).
        """
        if project.status.in_transition and not self.running(project.user_id, project.project_id):
            return [project.status]
        return []

    def _busy(self, project: Project) -> None:
        if project.status.in_transition and not self._stale(project):
            raise Conflict(
                f"Project {project.name!r} is {project.status}; wait until it settles.",
                code="InTransition",
            )

    # activate --------------------------------------------------------------------------

    async def activate(self, project: Project, wait: bool = True) -> Project:
        if project.status == Status.ACTIVE:
            return project
        self._busy(project)
        self._envs()
        start = self.event(project, Status.ACTIVATING, Step.START, "Activation started")
        started = await self._transition(
            project,
            [*(s for s in Status if s.can_activate), *self._stale(project)],
            Status.ACTIVATING,
            {
                "status_reason": None,
                "status_message": "Activation started",
                "desired_replicas": 1,
                "cluster_objects": True,
                "timeline": [start.to_json()],
            },
        )
        self.emit(start)
        task = self._start(started, self._activate(started), "activate")
        return await self._outcome(task, wait, started)

    async def repair(self, project: Project, why: str) -> Project:
        """Activate an `active` project again, because the cluster no longer runs it as
        recorded (its Deployment deleted, scaled to 0 or edited behind the console's back).

        The activation's steps are idempotent: what exists is left, what is missing or
        changed is applied again, and the project is `active` once the agent answers.
        """
        start = self.event(project, Status.ACTIVATING, Step.REPAIR, why)
        started = await self._transition(
            project,
            [Status.ACTIVE],
            Status.ACTIVATING,
            {
                "status_reason": None,
                "status_message": why,
                "desired_replicas": 1,
                "timeline": [start.to_json()],
            },
        )
        self.emit(start)
        log(
            logger,
            "project.repair",
            logging.WARNING,
            user_id=project.user_id,
            project_id=project.project_id,
            why=why,
        )
        self._start(started, self._activate(started), "activate")
        return started

    async def _activate(self, project: Project) -> Project:
        envs = self._envs()
        uid, pid = project.user_id, project.project_id
        timeout = self.settings.activation_timeout
        last = {"step": "start", "message": "Activation started"}
        began = time.monotonic()

        async def step(name: Step, message: str, work: Awaitable[Any]) -> Any:
            last.update(step=name, message=message)
            self.publish(project, Status.ACTIVATING, name, message)
            return await work

        async def progress(verdict: Verdict) -> None:
            last.update(step=verdict.step, message=verdict.progress)
            self.publish(project, Status.ACTIVATING, verdict.step, verdict.progress)

        applied = False
        secrets: dict[str, str] = {}
        try:
            async with asyncio.timeout(timeout):
                agent = await step(
                    Step.AGENT, "Checking the agent's environment", self._agent_environment()
                )
                secrets = agent.values
                namespace = envs.namespace(uid)
                await step(
                    Step.NAMESPACE, f"Preparing namespace {namespace}", envs.ensure_namespace(uid)
                )
                await step(
                    Step.SECRETS,
                    "Applying the agent's environment",
                    envs.apply_agent(uid, agent),
                )
                applied = True
                generation = await step(
                    Step.APPLY,
                    "Applying the Deployment, Service and route",
                    envs.apply_project(uid, pid, 1, agent.checksum(), project.model),
                )
                verdict = await self._ready_and_routed(uid, pid, progress, generation)
                if verdict.failed:
                    raise Failure(verdict.reason or "Failed", verdict.message or "")
                route = await envs.get_route(uid, pid)
                options = candidates(self.settings, envs.kube, uid, pid, route is not None)
                endpoint = await step(
                    Step.HEALTH, "Checking the agent's health", self._first_healthy(options, uid)
                )
        except TimeoutError:
            failure = Failure(
                "Timeout",
                f"The environment was not ready within {timeout:g} s "
                f"(last step: {last['message']}).",
            )
            await self._rollback(project, failure, applied)
            raise failure.to_error() from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = classify(exc)
            if failure.reason == "InternalError":
                logger.exception("activation failed unexpectedly")
            # a crashed agent's last words can quote its MongoDB URL or provider key
            failure = Failure(failure.reason, redact(failure.message, secrets))
            await self._rollback(project, failure, applied)
            raise failure.to_error() from None
        ready = self.event(project, Status.ACTIVE, Step.READY, f"Active at {endpoint}")
        doc = await self.store.compare_and_set(
            uid,
            pid,
            [Status.ACTIVATING],
            {
                "status": str(Status.ACTIVE),
                "timeline": self._timeline(ready),
                "endpoint": endpoint,
                "status_reason": None,
                "status_message": None,
                "last_activated_at": now(),
                "last_activity_at": now(),  # the idle stop counts from here
                "ingress": route["metadata"]["name"] if route else None,
                # what was applied: a different image later is an edit behind the console's
                # back (a new ACR_IMAGE reaches a project at its next activation, not before)
                "applied_image": self.settings.acr_image,
            },
            holder=self.replica,
            lease="release",
        )
        if doc is None:  # cannot happen while this task holds the transition; be explicit
            raise Conflict("The project changed during activation.", code="InTransition")
        log(
            logger,
            "project.activated",
            user_id=uid,
            project_id=pid,
            ms=round((time.monotonic() - began) * 1000),
            endpoint=endpoint,
        )
        active = Project.from_document(doc)
        self.emit(ready)
        return active

    async def _agent_environment(self) -> AgentEnvironment:
        """The agent's environment, checked before anything is applied or scaled."""
        if self.agent_env is None:
            raise AgentMisconfigured("The console has no source for the agent's environment.")
        return await self.agent_env.load()

    async def _ready_and_routed(
        self,
        uid: str,
        pid: str,
        progress: Callable[[Verdict], Awaitable[None]],
        generation: int,
    ) -> Verdict:
        """Wait for the pods; meanwhile a Gateway that refuses the route fails at once."""
        envs = self._envs()
        ready = asyncio.create_task(
            envs.wait_ready(uid, pid, progress, self.settings.unschedulable_grace, generation)
        )
        if manifests.route_kind(self.settings) != "HTTPRoute":
            return await ready
        routed = asyncio.create_task(self._route_accepted(uid, pid))
        try:
            pending = {ready, routed}
            while ready in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a refused route raises here, before the pod is ready
                if ready in done and ready.result().failed:
                    return ready.result()
            if not routed.done():
                gateway = f"{self.settings.gateway_namespace or '(its namespace)'}/"
                await progress(
                    Verdict(
                        step=Step.ROUTE,
                        progress=f"Pod ready; waiting for the Gateway {gateway}"
                        f"{self.settings.gateway_name} to accept the route",
                    )
                )
            await routed
            return ready.result()
        finally:
            for task in (ready, routed):
                task.cancel()
            await asyncio.gather(ready, routed, return_exceptions=True)

    async def _route_accepted(self, uid: str, pid: str) -> None:
        # decided before the activation's own timeout, so the operator reads why
        wait = min(ROUTE_ACCEPT_SECONDS, 0.75 * self.settings.activation_timeout)
        accepted, message = await self._envs().wait_route_accepted(uid, pid, wait)
        if not accepted:
            raise Failure("RouteNotAccepted", message)

    async def _first_healthy(self, endpoints: list[str], user_id: str | None = None) -> str:
        """The first endpoint whose health check passes (the last failure if none does)."""
        window = self.settings.health_timeout
        for index, endpoint in enumerate(endpoints):
            last = index == len(endpoints) - 1
            try:
                # an alternative is waiting: give this one a shorter window
                await self._healthy(endpoint, window if last else min(window, 5.0), user_id)
                return endpoint
            except Failure:
                if last:
                    raise
                log(
                    logger,
                    "project.endpoint_fallback",
                    logging.WARNING,
                    endpoint=endpoint,
                    next=endpoints[index + 1],
                )
        raise AssertionError("no endpoint to check")

    async def _healthy(self, endpoint: str, window: float, user_id: str | None = None) -> None:
        """The health check, retried briefly: a proxy or route may trail the pod's readiness."""
        assert self.goose is not None
        deadline = time.monotonic() + window
        delay = 0.1
        while True:
            remaining = deadline - time.monotonic()
            try:
                await self.goose.health(endpoint, max(0.5, min(5.0, remaining)))
                return
            except GooseUnreachable as exc:
                if time.monotonic() + delay > deadline:
                    raise Failure(
                        "HealthCheckFailed", self._health_message(endpoint, exc, user_id)
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _health_message(self, endpoint: str, exc: GooseUnreachable, user_id: str | None) -> str:
        """What the operator can do: a proxy that gets no answer is usually a NetworkPolicy."""
        text = f"The pod is ready but the agent's health check fails: {exc.message}"
        assert self.goose is not None
        if not (
            exc.timeout
            and self.goose.proxied(endpoint)
            and self.settings.network_policy
            and user_id
        ):
            return text
        namespaces = ", ".join(manifests.allowed_namespaces(self.settings))
        cidrs = ", ".join(self.settings.apiserver_cidr_list()) or "none"
        return (
            f"{text} The API server's proxy got no answer from the pod: the NetworkPolicy "
            f"{manifests.NETWORK_POLICY_NAME} in namespace "
            f"{manifests.namespace_name(self.settings, user_id)} admits traffic only from the "
            f"namespaces {namespaces} and the CIDRs {cidrs}. Where the API server does not "
            "reach pods through a pod in those namespaces (AKS with API Server VNet "
            "Integration, kubeadm, kind, k3s), set "
            f"{env_name('apiserver_cidrs')} to the API server's addresses."
        )

    async def _rollback(self, project: Project, failure: Failure, applied: bool = True) -> None:
        """Scale back to 0 (best effort, bounded), then record the failure.

        Nothing to scale when the failure came before the objects were applied. When the
        cluster itself is what failed, the failure is recorded first and the scale-down
        tried meanwhile: the operator hears at once, and the reconciler scales down what
        still runs once the API server answers again. The next activation in the namespace
        applies its objects again (a deleted Secret, say, may be why this one failed).
        """
        if self.environments is not None:
            self.environments.forget(project.user_id)
        if not applied:
            await self._fail(project, Status.ACTIVATING, failure)
        elif failure.reason == "ClusterUnavailable":
            await self._fail(project, Status.ACTIVATING, failure)
            task = asyncio.create_task(self._scale_down(project))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            await self._scale_down(project)
            await self._fail(project, Status.ACTIVATING, failure)

    async def _scale_down(self, project: Project) -> None:
        try:
            async with asyncio.timeout(15):
                await self._envs().scale(project.user_id, project.project_id, 0)
        except Exception as exc:  # the cluster may be the thing that failed
            log(
                logger,
                "project.scale_down_failed",
                logging.WARNING,
                user_id=project.user_id,
                project_id=project.project_id,
                error=str(exc),
                note="the reconciler scales it down when the API server answers",
            )

    # deactivate ------------------------------------------------------------------------

    async def deactivate(
        self,
        project: Project,
        wait: bool = True,
        reason: str | None = None,
        why: str | None = None,
        unless_changed: dict[str, Any] | None = None,
    ) -> Project:
        """Scale to 0; `reason` and `why` say why the project stopped (an idle stop's
        `Idle`), kept on the inactive project. An activation under way is cancelled.

        With `unless_changed` (fields as last read, e.g. `last_activity_at`), only an
        active project whose fields are still so is stopped: a stop decided on a reading
        does not hit a project that was used since (409 otherwise)."""
        if project.status == Status.INACTIVE:
            return project
        key = (project.user_id, project.project_id)
        if project.status == Status.ACTIVATING and key in self._tasks:
            return await self._cancel(project, wait)
        self._busy(project)
        if self.environments is None and project.status == Status.FAILED:
            # nothing can be running without a cluster: just clear the failure
            doc = await self._transition(
                project,
                [Status.FAILED],
                Status.INACTIVE,
                {"status_reason": None, "status_message": None},
            )
            self.publish(doc, Status.INACTIVE, Step.STOPPED, "Failure cleared")
            return doc
        self._envs()
        start = self.event(project, Status.DEACTIVATING, Step.START, why or "Deactivation started")
        allowed = [
            *(s for s in Status if s.can_deactivate and not s.in_transition),
            *self._stale(project),
        ]
        started = await self._transition(
            project,
            [Status.ACTIVE] if unless_changed is not None else allowed,
            Status.DEACTIVATING,
            {"desired_replicas": 0, "timeline": [start.to_json()]},
            where=unless_changed,
        )
        self.emit(start)
        task = self._start(started, self._deactivate(started, why, reason), "deactivate")
        return await self._outcome(task, wait, started)

    async def _cancel(self, project: Project, wait: bool) -> Project:
        """Stop an activation this process runs, then scale to 0 as a deactivation does
        (the project ends `inactive`).

        The desired state is written first (`deactivating`, 0 replicas): whatever fails
        after it leaves a deactivation for a reconciliation pass to finish, never an
        activation it would resume. Only then is the activation's task cancelled. An
        activation another replica runs cannot be cancelled from here: its lease answers 409.
        """
        key = (project.user_id, project.project_id)
        running = self._tasks.get(key)
        if (
            running is None
            or not running.get_name().startswith("activate")
            or (key in self._cancelling)
        ):
            raise Conflict(
                f"Project {project.name!r} is being changed; wait until it settles.",
                code="InTransition",
            )
        self._cancelling.add(key)  # counts as worked on until the deactivation's task runs
        try:
            try:
                started = await self._transition(
                    project,
                    [Status.ACTIVATING],
                    Status.DEACTIVATING,
                    {"desired_replicas": 0, "status_message": "Activation cancelled"},
                )
            except Conflict:
                doc = await self.store.get(*key)
                current = Project.from_document(doc) if doc else None
                if current is None or current.status == Status.ACTIVATING:
                    raise
                # it ended (active or failed) just before: stop it from there
                self._cancelling.discard(key)
                return await self.deactivate(current, wait)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            if self.environments is not None:
                self.environments.forget(project.user_id)  # an apply may have been cut short
        finally:
            self._cancelling.discard(key)
        self.publish(project, Status.DEACTIVATING, Step.CANCEL, "Activation cancelled; stopping it")
        log(logger, "project.activation_cancelled", user_id=key[0], project_id=key[1])
        task = self._start(started, self._deactivate(started, "Activation cancelled"), "deactivate")
        return await self._outcome(task, wait, started)

    async def _deactivate(
        self, project: Project, why: str | None = None, reason: str | None = None
    ) -> Project:
        envs = self._envs()
        uid, pid = project.user_id, project.project_id
        note = None
        try:
            self.publish(project, Status.DEACTIVATING, Step.SCALE, "Scaling the Deployment to 0")
            await envs.scale(uid, pid, 0)
            self.publish(
                project, Status.DEACTIVATING, Step.TERMINATING, "Waiting for the pod to stop"
            )
            if not await envs.wait_pods_gone(uid, pid, SCALE_DOWN_SECONDS):
                note = f"The pod was still terminating after {SCALE_DOWN_SECONDS:g} s."
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = classify(exc)
            await self._fail(
                project,
                Status.DEACTIVATING,
                failure,
                prefix="The environment could not be stopped: ",
            )
            raise failure.to_error() from None
        message = " ".join(filter(None, [why and f"{why}.", note])) or None
        stopped = self.event(project, Status.INACTIVE, Step.STOPPED, message or "Stopped")
        doc = await self.store.compare_and_set(
            uid,
            pid,
            [Status.DEACTIVATING],
            {
                "status": str(Status.INACTIVE),
                "endpoint": None,
                "status_reason": reason,
                "status_message": message,
                "timeline": self._timeline(stopped),
            },
            holder=self.replica,
            lease="release",
        )
        if doc is None:
            raise Conflict("The project changed during deactivation.", code="InTransition")
        self.emit(stopped)
        return Project.from_document(doc)

    # delete ----------------------------------------------------------------------------

    async def delete(self, project: Project) -> None:
        self._busy(project)
        doc = await self.store.get(project.user_id, project.project_id) or {}
        touched = bool(doc.get("cluster_objects"))
        if touched:
            self._envs()
        start = self.event(project, Status.DELETING, Step.START, "Deletion started")
        started = await self._transition(
            project,
            [*(s for s in Status if s.can_delete), *self._stale(project)],
            Status.DELETING,
            {"timeline": [start.to_json()]},
        )
        self.emit(start)
        task = self._start(started, self._delete(started, touched), "delete")
        await asyncio.shield(task)

    async def _delete(self, project: Project, touched: bool) -> Project:
        uid, pid = project.user_id, project.project_id
        try:
            if touched:
                envs = self._envs()
                what = "Deleting the route, Service and Deployment"
                self.publish(project, Status.DELETING, Step.DELETE, what)
                if not await envs.delete_project(uid, pid, DELETE_SECONDS):
                    raise Failure(
                        "Timeout", f"The cluster objects were not gone within {DELETE_SECONDS:g} s."
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = classify(exc)
            await self._fail(project, Status.DELETING, failure, prefix="Deletion failed: ")
            raise failure.to_error() from None
        await self.store.delete(uid, pid, [Status.DELETING])
        self.publish(project, "deleted", Step.DELETED, f"Project {project.name!r} deleted")
        await self._maybe_delete_namespace(project)
        return project

    async def _maybe_delete_namespace(self, project: Project) -> None:
        """The user's last project takes the namespace with it, unless told to keep it."""
        # the agent's Secrets there are the console's own copies: they go with it
        if self.settings.keep_namespaces or self.environments is None:
            return
        if await self.store.count(project.user_id):
            return
        try:
            if await self.environments.delete_namespace(project.user_id):
                log(
                    logger,
                    "namespace.deleted",
                    user_id=project.user_id,
                    namespace=manifests.namespace_name(self.settings, project.user_id),
                )
        except Exception as exc:  # the project is gone; a leftover namespace is only tidy-up
            log(
                logger,
                "namespace.delete_failed",
                logging.WARNING,
                user_id=project.user_id,
                error=str(exc),
            )
