"""Scheduler and kubelet of the simulated node: a pod's life from Pending to gone.

Each pod gets a task that schedules it, sets up its volumes (ConfigMaps and Secrets;
a missing one keeps the pod ContainerCreating with FailedMount events, retried), then
one task per container that pulls the image, resolves the environment from `env`,
`envFrom` and their references (a missing Secret or key is CreateContainerConfigError
with the kubelet's message, retried, started as soon as the object appears), starts the
process and probes readiness, all with configurable delays and the real status and
Events. The first container runs the simulated Goose agent; when the agent exits at
start (`AgentExit`: no MONGODB_URL, an unreachable database) the container terminates
with its exit code and restarts with back-off (CrashLoopBackOff), re-resolving its
environment and files at every start, exactly as the `crash`/`oom` image tags do.
Image-tag faults: `pull-error` (ErrImagePull / ImagePullBackOff), `crash` (exit 1),
`oom` (OOMKilled, 137), `never-ready` (Running, never Ready). Each container instance's
output is kept (current and previous) for the `log` subresource. Deleting a pod runs
the termination (Killing, grace) and stops the agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from . import podenv
from .deployments import owner_name
from .errors import bad_request
from .events import NODE_NAME, EventRecorder
from .goose import GooseServer
from .logs import ContainerLog, waiting_error
from .process import AgentExit, container_argv
from .registry import Registry
from .resources import CONFIGMAPS, DEPLOYMENTS, NODES, PODS, REPLICASETS, SECRETS
from .settings import Delays
from .store import Change, Obj
from .util import clone, now_iso

log = logging.getLogger(__name__)

FAULT_TAGS = ("pull-error", "crash", "oom", "never-ready")
NODE_IP = "172.18.0.2"
_POD_IPS = range(2, 250)  # 10.244.0.250 is the simulated konnectivity agent (proxy source)


class ServerFactory(Protocol):
    """Builds the agent of one container start (`SimCluster._make_server`)."""

    def __call__(
        self,
        pod: Obj,
        project: tuple[str, str],
        env: dict[str, str],
        healthy: bool,
        on_log: Callable[[str], None],
        files: dict[str, str] | None = None,
        argv: list[str] | None = None,
    ) -> GooseServer: ...


def _probe_port(container: Obj, port: object) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def image_tag(image: str) -> str:
    if "@" in image:
        return ""
    last = image.rsplit("/", 1)[-1]
    return last.partition(":")[2] or "latest"


def qualified_image(image: str) -> str:
    """`goose-api:latest` -> `docker.io/library/goose-api:latest`, as containerd reports it."""
    name = image if ":" in image.rsplit("/", 1)[-1] or "@" in image else image + ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        return "docker.io/library/" + name
    if "." in first or ":" in first or first == "localhost":
        return name
    return "docker.io/" + name


def go_duration(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def node_object() -> Obj:
    """The single simulated node."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/control-plane": "",
            },
        },
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
    }


def node_status() -> Obj:
    now = now_iso()
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        ],
        "addresses": [
            {"type": "InternalIP", "address": NODE_IP},
            {"type": "Hostname", "address": NODE_NAME},
        ],
        "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "nodeInfo": {
            "kubeletVersion": "v1.32.0",
            "containerRuntimeVersion": "containerd://2.0.0",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "osImage": "gooseui simulated node",
            "kernelVersion": "6.1.0",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kubeProxyVersion": "",
        },
    }


def _merge_conditions(old: list[Obj], new: list[Obj]) -> list[Obj]:
    """Keep lastTransitionTime for conditions whose status did not change."""
    before = {c["type"]: c for c in old}
    out = []
    for cond in new:
        prev = before.get(cond["type"])
        if prev and prev.get("status") == cond.get("status"):
            cond = {
                **cond,
                "lastTransitionTime": prev.get("lastTransitionTime", cond["lastTransitionTime"]),
            }
        out.append(cond)
    return out


@dataclass(eq=False)
class ContainerRun:
    """The kubelet's state for one container of a pod, across its restarts."""

    spec: Obj
    status: Obj
    agent: bool = False  # runs the simulated Goose agent (the pod's first container)
    task: asyncio.Task[None] | None = None
    server: GooseServer | None = None
    logs: dict[str, ContainerLog] = field(default_factory=dict)  # by containerID (<= 2)

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    def new_log(self, container_id: str) -> ContainerLog:
        """A new instance's log; only it and the one before are kept (current, previous)."""
        latest = list(self.logs)[-1:]
        self.logs = {cid: self.logs[cid] for cid in latest}
        fresh = ContainerLog(container_id)
        self.logs[container_id] = fresh
        return fresh


@dataclass(eq=False)
class PodRun:
    """The kubelet's state for one pod."""

    namespace: str
    name: str
    uid: str
    terminate: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    containers: dict[str, ContainerRun] = field(default_factory=dict)
    volumes: podenv.Volumes = field(default_factory=dict)
    ip: str = ""
    sandbox: bool = False  # volumes set up, sandbox created (PodReadyToStartContainers)
    finishing: bool = False

    @property
    def server(self) -> GooseServer | None:
        for container in self.containers.values():
            if container.server is not None:
                return container.server
        return None

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless termination is requested first; True means terminate now."""
        if self.terminate.is_set():
            return True
        if seconds <= 0:
            await asyncio.sleep(0)
            return self.terminate.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.terminate.wait(), seconds)
        return self.terminate.is_set()


def _waiting(
    c: Obj, reason: str, message: str = "", restarts: int = 0, last: Obj | None = None
) -> Obj:
    waiting: Obj = {"reason": reason}
    if message:
        waiting["message"] = message
    return {
        "name": c["name"],
        "image": c.get("image", ""),
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": restarts,
        "state": {"waiting": waiting},
        "lastState": clone(last) if last else {},
    }


def _image_id(c: Obj) -> str:
    return qualified_image(c.get("image", "")).rsplit(":", 1)[0] + "@sha256:" + "0" * 64


def _running(
    c: Obj,
    started_at: str,
    ready: bool,
    restarts: int = 0,
    last: Obj | None = None,
    container_id: str = "",
) -> Obj:
    return {
        "name": c["name"],
        "image": c.get("image", ""),
        "imageID": _image_id(c),
        "containerID": container_id or "containerd://" + secrets.token_hex(32),
        "ready": ready,
        "started": True,
        "restartCount": restarts,
        "state": {"running": {"startedAt": started_at}},
        "lastState": clone(last) if last else {},
    }


def _terminated(c: Obj, terminated: Obj, restarts: int, last: Obj | None) -> Obj:
    return {
        "name": c["name"],
        "image": c.get("image", ""),
        "imageID": _image_id(c),
        "containerID": terminated.get("containerID", ""),
        "ready": False,
        "started": False,
        "restartCount": restarts,
        "state": {"terminated": clone(terminated)},
        "lastState": clone(last) if last else {},
    }


def pod_phase(statuses: list[Obj], restart_policy: str) -> str:
    """The kubelet's getPhase for regular containers."""
    waiting = running = stopped = succeeded = 0
    for cs in statuses:
        state = cs.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif (cs.get("lastState") or {}).get("terminated"):
            stopped += 1  # waiting to restart after a run
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


class Kubelet:
    """Runs every pod bound to the simulated node (and schedules them first)."""

    def __init__(
        self,
        registry: Registry,
        recorder: EventRecorder,
        delays: Callable[[], Delays],
        make_server: ServerFactory,
        http: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.registry = registry
        self.recorder = recorder
        self.delays = delays
        self.make_server = make_server
        self.http = http
        self.runs: dict[str, PodRun] = {}  # by pod uid
        self._by_name: dict[tuple[str, str], PodRun] = {}
        self._node_changed = asyncio.Event()
        self._config_changed: dict[str, asyncio.Event] = {}  # namespace -> waiters' event
        self._next_ip = 0
        self._ips: set[str] = set()

    # ------------------------------------------------------------------ events

    def on_change(self, change: Change) -> None:
        if change.key == NODES.key:
            self._node_changed.set()
            self._node_changed = asyncio.Event()
            return
        if change.key in (SECRETS.key, CONFIGMAPS.key):
            # containers and volumes waiting for a Secret/ConfigMap of this namespace retry now
            event = self._config_changed.pop(
                change.obj.get("metadata", {}).get("namespace", ""), None
            )
            if event is not None:
                event.set()
            return
        if change.key != PODS.key:
            return
        meta = change.obj["metadata"]
        uid = meta.get("uid", "")
        run = self.runs.get(uid)
        if change.type == "DELETED":
            if run is not None and not run.finishing and run.task is not None:
                run.task.cancel()
            return
        if run is None and change.type == "ADDED":
            if (change.obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            run = PodRun(meta.get("namespace", ""), meta["name"], uid)
            self.runs[uid] = run
            self._by_name[(run.namespace, run.name)] = run
            run.task = asyncio.get_running_loop().create_task(
                self._run(run), name=f"pod-{meta['name']}"
            )
        if run is not None and meta.get("deletionTimestamp"):
            run.terminate.set()

    def endpoint(self, namespace: str, pod: str, port: int | None = None) -> int | None:
        """The loopback port of a pod's Goose server, if it serves on the pod's `port`."""
        run = self._by_name.get((namespace, pod))
        server = run.server if run is not None else None
        if server is None or not server.reachable_at(port):
            return None
        return server.port or None

    def container_log(self, pod: Obj, container: str, previous: bool) -> ContainerLog | None:
        """The log a request for `container` reads, chosen from the pod's status as the
        kubelet's validateContainerLogStatus does (400 for a container not started yet);
        None (an empty answer) for a pod not bound to the node yet."""
        name = pod["metadata"]["name"]
        if not (pod.get("spec") or {}).get("nodeName"):
            return None
        status = pod.get("status") or {}
        found = next(
            (
                cs
                for cs in (status.get("containerStatuses") or [])
                + (status.get("initContainerStatuses") or [])
                if cs.get("name") == container
            ),
            None,
        )
        if found is None:
            raise bad_request(f'container "{container}" in pod "{name}" is not available')
        state = found.get("state") or {}
        last = (found.get("lastState") or {}).get("terminated") or {}
        if previous:
            if not last.get("containerID"):
                raise bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            cid = last["containerID"]
        elif "running" in state:
            cid = found.get("containerID", "")
        elif "terminated" in state:
            cid = state["terminated"].get("containerID") or last.get("containerID", "")
            if not cid:
                raise bad_request(f'container "{container}" in pod "{name}" is terminated')
        elif last:
            if not last.get("containerID"):
                raise bad_request(f'container "{container}" in pod "{name}" is terminated')
            cid = last["containerID"]
        elif "waiting" in state:
            raise waiting_error(container, name, state["waiting"].get("reason", ""))
        else:
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start - no logs yet'
            )
        run = self._by_name.get((pod["metadata"].get("namespace", ""), name))
        if run is None or run.uid != pod["metadata"].get("uid"):
            return None
        crun = run.containers.get(container)
        return crun.logs.get(cid) if crun is not None else None

    async def stop(self) -> None:
        runs = list(self.runs.values())
        for run in runs:
            run.finishing = True
            if run.task is not None:
                run.task.cancel()
        for run in runs:
            if run.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await run.task
        self.runs.clear()
        self._by_name.clear()

    # ------------------------------------------------------------------ helpers

    def _pod(self, run: PodRun) -> Obj | None:
        pod = self.registry.find(PODS, run.namespace, run.name)
        if pod is None or pod["metadata"].get("uid") != run.uid:
            return None
        return pod

    def _update(self, run: PodRun, change: Callable[[Obj], None]) -> Obj | None:
        if self._pod(run) is None:
            return None
        return self.registry.mutate(PODS, run.namespace, run.name, change, "kubelet", track=False)

    def _event(
        self,
        run: PodRun,
        kind: str,
        reason: str,
        message: str,
        container: str | None = None,
        component: str = "kubelet",
    ) -> None:
        pod = self._pod(run)
        if pod is not None:
            path = f"spec.containers{{{container}}}" if container else None
            self.recorder.record(pod, kind, reason, message, component, path)

    def _schedulable(self) -> bool:
        for node in self.registry.store.list(NODES.key):
            if not (node.get("spec") or {}).get("unschedulable"):
                return True
        return False

    def _project(self, pod: Obj) -> tuple[str, str]:
        ns = pod["metadata"].get("namespace", "")
        rs_name = owner_name(pod, "ReplicaSet")
        rs = self.registry.find(REPLICASETS, ns, rs_name) if rs_name else None
        dep = owner_name(rs, "Deployment") if rs else None
        if dep and self.registry.find(DEPLOYMENTS, ns, dep) is not None:
            return (ns, dep)
        return (ns, pod["metadata"]["name"])

    def _allocate_ip(self) -> str:
        for _ in _POD_IPS:
            self._next_ip = (self._next_ip + 1) % len(_POD_IPS)
            ip = f"10.244.0.{_POD_IPS[self._next_ip]}"
            if ip not in self._ips:
                break
        self._ips.add(ip)
        return ip

    async def _wait_config(self, run: PodRun, seconds: float) -> bool:
        """Back off for `seconds`, or less when a Secret/ConfigMap of the namespace changes;
        True means terminate now."""
        event = self._config_changed.setdefault(run.namespace, asyncio.Event())
        waiter = asyncio.ensure_future(event.wait())
        terminated = asyncio.ensure_future(run.terminate.wait())
        try:
            await asyncio.wait(
                {waiter, terminated}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            terminated.cancel()
        return run.terminate.is_set()

    def _backoff(self, attempt: int) -> float:
        delays = self.delays()
        return min(delays.backoff * 2 ** max(attempt - 1, 0), delays.backoff_max)

    @staticmethod
    def _conditions(
        now: str,
        scheduled: bool,
        started: bool,
        ready: bool,
        unready: list[str],
        reason: str = "",
        message: str = "",
    ) -> list[Obj]:
        def cond(kind: str, ok: bool, why: str = "", text: str = "") -> Obj:
            c: Obj = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": now,
            }
            if why:
                c["reason"] = why
            if text:
                c["message"] = text
            return c

        if not scheduled:
            return [cond("PodScheduled", False, reason, message)]
        names = "[" + " ".join(unready) + "]"
        return [
            cond("PodReadyToStartContainers", started),
            cond("Initialized", True),
            cond(
                "Ready",
                ready,
                "" if ready else "ContainersNotReady",
                "" if ready else f"containers with unready status: {names}",
            ),
            cond(
                "ContainersReady",
                ready,
                "" if ready else "ContainersNotReady",
                "" if ready else f"containers with unready status: {names}",
            ),
            cond("PodScheduled", True),
        ]

    def _publish(self, run: PodRun) -> Obj | None:
        """Write the pod status from the containers' current states."""
        now = now_iso()
        statuses = [clone(c.status) for c in run.containers.values()]
        unready = [s["name"] for s in statuses if not s.get("ready")]
        ready = bool(statuses) and not unready

        def change(pod: Obj) -> None:
            spec = pod.get("spec") or {}
            status = pod.setdefault("status", {})
            status["phase"] = pod_phase(statuses, spec.get("restartPolicy", "Always"))
            status["conditions"] = _merge_conditions(
                status.get("conditions") or [],
                self._conditions(now, True, run.sandbox, ready, unready),
            )
            status["containerStatuses"] = statuses
            status["hostIP"] = NODE_IP
            status["hostIPs"] = [{"ip": NODE_IP}]
            if run.ip and run.sandbox:
                status["podIP"] = run.ip
                status["podIPs"] = [{"ip": run.ip}]
            status.setdefault("startTime", now)
            status["qosClass"] = (
                "BestEffort"
                if not any((c.get("resources") or {}) for c in spec.get("containers") or [])
                else "Burstable"
            )

        return self._update(run, change)

    # ------------------------------------------------------------------ lifecycle

    async def _run(self, run: PodRun) -> None:
        try:
            await self._lifecycle(run)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("simulated kubelet failed on pod %s/%s", run.namespace, run.name)
        finally:
            run.finishing = True
            await self._stop_containers(run)
            self._ips.discard(run.ip)
            self.runs.pop(run.uid, None)
            if self._by_name.get((run.namespace, run.name)) is run:
                del self._by_name[(run.namespace, run.name)]

    async def _stop_containers(self, run: PodRun) -> None:
        current = asyncio.current_task()
        tasks = [
            c.task for c in run.containers.values() if c.task is not None and c.task is not current
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for container in run.containers.values():
            if container.server is not None:
                server, container.server = container.server, None
                with contextlib.suppress(Exception):
                    await server.stop()
            for container_log in container.logs.values():
                container_log.end()

    async def _lifecycle(self, run: PodRun) -> None:
        delays = self.delays()
        if await run.sleep(delays.schedule):
            return await self._finish(run)
        announced = False
        while not self._schedulable():
            if not announced:
                announced = True
                message = (
                    "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes "
                    "are available: 1 Preemption is not helpful for scheduling."
                )
                now = now_iso()

                def unschedulable(pod: Obj, now: str = now, message: str = message) -> None:
                    pod.setdefault("status", {})["conditions"] = self._conditions(
                        now, False, False, False, [], "Unschedulable", message
                    )

                self._update(run, unschedulable)
                self._event(
                    run, "Warning", "FailedScheduling", message, component="default-scheduler"
                )
            waiter = asyncio.ensure_future(self._node_changed.wait())
            terminated = asyncio.ensure_future(run.terminate.wait())
            try:
                await asyncio.wait({waiter, terminated}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                terminated.cancel()
            if run.terminate.is_set():
                return await self._finish(run)
        pod = self._pod(run)
        if pod is None:
            return
        run.ip = self._allocate_ip()
        containers = (pod.get("spec") or {}).get("containers") or []

        def bind(p: Obj) -> None:
            p["spec"]["nodeName"] = NODE_NAME

        self.registry.mutate(PODS, run.namespace, run.name, bind, "kube-scheduler")
        self._event(
            run,
            "Normal",
            "Scheduled",
            f"Successfully assigned {run.namespace}/{run.name} to {NODE_NAME}",
            component="default-scheduler",
        )
        for n, c in enumerate(containers):
            run.containers[c["name"]] = ContainerRun(
                c, _waiting(c, "ContainerCreating"), agent=n == 0
            )
        self._publish(run)
        if not await self._mount_volumes(run):
            return await self._finish(run)
        run.sandbox = True
        self._publish(run)
        loop = asyncio.get_running_loop()
        for container in run.containers.values():
            container.task = loop.create_task(
                self._container(run, container), name=f"container-{run.name}-{container.name}"
            )
        await run.terminate.wait()
        await self._finish(run)

    async def _mount_volumes(self, run: PodRun) -> bool:
        """Set up the pod's volumes, retrying with back-off; False when terminated first."""
        attempt = 0
        while True:
            pod = self._pod(run)
            if pod is None:
                return False
            try:
                run.volumes = podenv.resolve_volumes(self.registry, pod)
                return True
            except podenv.MountError as err:
                attempt += 1
                self._event(run, "Warning", "FailedMount", err.event())
                if await self._wait_config(run, self._backoff(attempt)):
                    return False

    def _refresh_volumes(self, run: PodRun, pod: Obj) -> None:
        """Before a restart: the volumes' current content (kept as they were when a
        ConfigMap or Secret vanished since, as a mounted volume keeps its files)."""
        try:
            run.volumes = podenv.resolve_volumes(self.registry, pod)
        except podenv.MountError as err:
            self._event(run, "Warning", "FailedMount", err.event())

    async def _container(self, run: PodRun, c: ContainerRun) -> None:
        """One container from image pull through restarts, until the pod terminates."""
        spec = c.spec
        name = c.name
        tag = image_tag(spec.get("image", ""))
        pod = self._pod(run)
        missing = [
            ref.get("name", "")
            for ref in ((pod or {}).get("spec") or {}).get("imagePullSecrets") or []
            if self.registry.find(SECRETS, run.namespace, ref.get("name", "")) is None
        ]
        if missing:
            self._event(
                run,
                "Warning",
                "FailedToRetrieveImagePullSecret",
                f"Unable to retrieve some image pull secrets ({', '.join(missing)}); attempting "
                "to pull the image may not succeed.",
            )
        self._event(run, "Normal", "Pulling", f'Pulling image "{spec.get("image")}"', name)
        if await run.sleep(self.delays().pull):
            return
        if tag == "pull-error":
            return await self._pull_error(run, c)
        self._event(
            run,
            "Normal",
            "Pulled",
            f'Successfully pulled image "{spec.get("image")}" in 150ms (150ms including '
            "waiting). Image size: 52428800 bytes.",
            name,
        )
        restarts = 0
        last: Obj | None = None
        config_attempts = 0
        first = True
        while True:
            pod = self._pod(run)
            if pod is None:
                return
            if not first:
                self._event(
                    run,
                    "Normal",
                    "Pulled",
                    f'Container image "{spec.get("image")}" already present on machine',
                    name,
                )
                self._refresh_volumes(run, pod)
            first = False
            try:
                env = podenv.resolve_env(self.registry, pod, spec, {"HOSTNAME": run.name})
                files = podenv.container_files(spec, run.volumes, env)
            except podenv.ConfigError as err:
                config_attempts += 1
                self._event(run, "Warning", "Failed", f"Error: {err.message}", name)
                c.status = _waiting(spec, "CreateContainerConfigError", err.message, restarts, last)
                self._publish(run)
                if await self._wait_config(run, self._backoff(config_attempts)):
                    return
                continue
            config_attempts = 0
            self._event(run, "Normal", "Created", f"Created container: {name}", name)
            if await run.sleep(self.delays().start):
                return
            self._event(run, "Normal", "Started", f"Started container {name}", name)
            container_id = "containerd://" + secrets.token_hex(32)
            output = c.new_log(container_id)
            started_at = now_iso()
            c.status = _running(spec, started_at, False, restarts, last, container_id)
            self._publish(run)
            exit_code, reason, message = await self._process(run, c, pod, env, files, tag, output)
            if exit_code is None:
                return  # terminated while running
            output.end()
            terminated: Obj = {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": started_at,
                "finishedAt": now_iso(),
                "containerID": container_id,
            }
            if message:
                terminated["message"] = message
            policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
            c.status = _terminated(spec, terminated, restarts, last)
            self._publish(run)
            if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                return
            restarts += 1
            last = {"terminated": terminated}
            shown = min(10 * 2 ** (restarts - 1), 300)
            backoff_message = (
                f"back-off {go_duration(shown)} restarting failed container={name} "
                f"pod={run.name}_{run.namespace}({run.uid})"
            )
            c.status = _waiting(spec, "CrashLoopBackOff", backoff_message, restarts, last)
            self._publish(run)
            self._event(
                run,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {name} in pod "
                f"{run.name}_{run.namespace}({run.uid})",
                name,
            )
            if await run.sleep(self._backoff(restarts)):
                return

    async def _process(
        self,
        run: PodRun,
        c: ContainerRun,
        pod: Obj,
        env: dict[str, str],
        files: dict[str, str],
        tag: str,
        output: ContainerLog,
    ) -> tuple[int | None, str, str]:
        """Run the container's process: (exit code, reason, message) when it exits, or
        (None, "", "") when the pod terminates first (the process is still running then)."""
        if tag in ("crash", "oom"):
            output.write(
                "simulated crash: out of memory" if tag == "oom" else "simulated crash: exit 1"
            )
            if await run.sleep(self.delays().crash):
                return None, "", ""
            return (137, "OOMKilled", "") if tag == "oom" else (1, "Error", "")
        if c.agent:
            argv = container_argv(
                [podenv.expand(str(a), env) for a in c.spec.get("command") or []],
                [podenv.expand(str(a), env) for a in c.spec.get("args") or []],
            )
            server = self.make_server(
                pod,
                self._project(pod),
                env,
                tag != "never-ready",
                output.write,
                files=files,
                argv=argv,
            )
            c.server = server
            try:
                await server.start()
            except AgentExit as exit_:
                c.server = None
                with contextlib.suppress(Exception):
                    await server.stop()
                reason = exit_.reason or "Error"
                if exit_.code == 0 and reason == "Error":
                    reason = "Completed"
                # a process that never started has the runtime's words, not a log
                message = exit_.message or self._termination_message(c, exit_.code, output)
                return exit_.code, reason, message
        return await self._readiness(run, c, tag)

    @staticmethod
    def _termination_message(c: ContainerRun, code: int, output: ContainerLog) -> str:
        """`terminationMessagePolicy: FallbackToLogsOnError`: the log's tail (80 lines,
        2 KiB) when the container failed; the agent writes no termination-log file."""
        if c.spec.get("terminationMessagePolicy") != "FallbackToLogsOnError" or code == 0:
            return ""
        text = "\n".join(line.text for line in list(output.lines)[-80:])
        return text.encode()[-2048:].decode("utf-8", "ignore")

    async def _readiness(
        self, run: PodRun, c: ContainerRun, tag: str
    ) -> tuple[int | None, str, str]:
        """Probe until ready, mark the container ready, then run (liveness) until the pod
        terminates or the liveness probe kills the container."""
        probe = c.spec.get("readinessProbe") or c.spec.get("startupProbe")
        if await run.sleep(self.delays().ready + self.delays().slow_readiness):
            return None, "", ""
        while True:
            ok = tag != "never-ready" and await self._probe(c, probe)
            if ok:
                break
            if probe:
                self._event(
                    run,
                    "Warning",
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503",
                    c.name,
                )
            if await run.sleep(self.delays().probe_period):
                return None, "", ""
        c.status = {**c.status, "ready": True}
        self._publish(run)
        return await self._liveness(run, c)

    async def _liveness(self, run: PodRun, c: ContainerRun) -> tuple[int | None, str, str]:
        """Run the liveness probe until the pod terminates; failing it kills the container.

        After `failureThreshold` failures in a row the kubelet kills the container and it
        restarts (exit 137): an HTTP liveness check on an endpoint that answers 503 while a
        dependency blips restarts the agent, with every reply in flight.
        """
        probe = c.spec.get("livenessProbe")
        if not probe:
            await run.terminate.wait()
            return None, "", ""
        period = float(probe.get("periodSeconds", 10))
        threshold = int(probe.get("failureThreshold", 3))
        failures = 0
        while True:
            if await run.sleep(period):
                return None, "", ""
            if await self._probe(c, probe):
                failures = 0
                continue
            failures += 1
            kind = (
                "HTTP probe failed with statuscode: 503"
                if probe.get("httpGet")
                else ("dial tcp: connect: connection refused")
            )
            self._event(run, "Warning", "Unhealthy", f"Liveness probe failed: {kind}", c.name)
            if failures < threshold:
                continue
            self._event(
                run,
                "Normal",
                "Killing",
                f"Container {c.name} failed liveness probe, will be restarted",
                c.name,
            )
            server, c.server = c.server, None
            if server is not None:
                await server.stop()
            return 137, "Error", ""

    async def _probe(self, c: ContainerRun, probe: Obj | None) -> bool:
        """The kubelet's HTTP or TCP probe (host network: never subject to NetworkPolicy)."""
        tcp = (probe or {}).get("tcpSocket")
        if tcp is not None:
            return c.server is None or c.server.reachable_at(_probe_port(c.spec, tcp.get("port")))
        get = (probe or {}).get("httpGet")
        if not get or c.server is None:
            return True
        if not c.server.reachable_at(_probe_port(c.spec, get.get("port"))):
            return False  # connection refused: nothing listens there
        path = get.get("path", "/")
        try:
            timeout = aiohttp.ClientTimeout(total=float((probe or {}).get("timeoutSeconds", 1)))
            async with self.http().get(
                f"http://127.0.0.1:{c.server.port}{path}", timeout=timeout
            ) as response:
                await response.read()
                return 200 <= response.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _pull_error(self, run: PodRun, c: ContainerRun) -> None:
        image = c.spec.get("image", "")
        full = qualified_image(image)
        error = (
            f'failed to pull and unpack image "{full}": failed to resolve reference '
            f'"{full}": {full}: not found'
        )
        name = c.name
        attempt = 0
        while True:
            attempt += 1
            self._event(run, "Warning", "Failed", f'Failed to pull image "{image}": {error}', name)
            self._event(run, "Warning", "Failed", "Error: ErrImagePull", name)
            c.status = _waiting(c.spec, "ErrImagePull", error)
            self._publish(run)
            backoff = self._backoff(attempt)
            if await run.sleep(backoff):
                return
            self._event(run, "Normal", "BackOff", f'Back-off pulling image "{image}"', name)
            self._event(run, "Warning", "Failed", "Error: ImagePullBackOff", name)
            c.status = _waiting(
                c.spec,
                "ImagePullBackOff",
                f'Back-off pulling image "{image}": ErrImagePull: {error}',
            )
            self._publish(run)
            if await run.sleep(backoff):
                return
            self._event(run, "Normal", "Pulling", f'Pulling image "{image}"', name)
            if await run.sleep(self.delays().pull):
                return

    async def _finish(self, run: PodRun) -> None:
        """Termination: Killing events, grace, then the pod object goes away."""
        pod = self._pod(run)
        if pod is None:
            return
        running = [c for c in run.containers.values() if "running" in (c.status.get("state") or {})]
        tasks = [c.task for c in run.containers.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for c in running:
            self._event(run, "Normal", "Killing", f"Stopping container {c.name}", c.name)
        for c in run.containers.values():
            if c.server is not None:
                c.server.healthy = False

        def not_ready(p: Obj) -> None:
            status = p.setdefault("status", {})
            for cs in status.get("containerStatuses") or []:
                cs["ready"] = False
            for cond in status.get("conditions") or []:
                if (
                    cond.get("type") in ("Ready", "ContainersReady")
                    and cond.get("status") == "True"
                ):
                    cond["status"] = "False"
                    cond["lastTransitionTime"] = now_iso()

        self._update(run, not_ready)
        await asyncio.sleep(self.delays().terminate)
        run.finishing = True
        await self._stop_containers(run)
        if self._pod(run) is not None:
            self.registry.remove_now(PODS, run.namespace, run.name)
