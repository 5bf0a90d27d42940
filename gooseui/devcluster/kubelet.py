"""Scheduler and kubelet of the simulated node: a pod's life from Pending to gone.

Each pod gets a task that walks it through scheduling, image pull, start and
readiness with configurable delays, writing status and Events the way the real
components do, and plays the image-tag faults: `pull-error` (ErrImagePull /
ImagePullBackOff), `crash` and `oom` (CrashLoopBackOff with restart counts and
lastState), `never-ready` (Running, never Ready). A started container runs a
simulated Goose API server; the readiness probe really calls its health endpoint.
Deleting a pod runs the termination (Killing, grace) and stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from .deployments import owner_name
from .events import NODE_NAME, EventRecorder
from .goose import GooseServer
from .registry import Registry
from .resources import DEPLOYMENTS, NODES, PODS, REPLICASETS
from .settings import Delays
from .store import Change, Obj
from .util import clone, now_iso

log = logging.getLogger(__name__)

FAULT_TAGS = ("pull-error", "crash", "oom", "never-ready")
NODE_IP = "172.18.0.2"
ServerFactory = Callable[
    [Obj, tuple[str, str], dict[str, str], bool, Callable[[str], None]], GooseServer
]


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


@dataclass(eq=False)
class PodRun:
    """The kubelet's state for one pod."""

    namespace: str
    name: str
    uid: str
    terminate: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    server: GooseServer | None = None
    log: deque[str] = field(default_factory=lambda: deque(maxlen=2000))
    ip: str = ""
    finishing: bool = False

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
        self._node_changed = asyncio.Event()
        self._next_ip = 1

    # ------------------------------------------------------------------ events

    def on_change(self, change: Change) -> None:
        if change.key == NODES.key:
            self._node_changed.set()
            self._node_changed = asyncio.Event()
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
            run.task = asyncio.get_running_loop().create_task(
                self._run(run), name=f"pod-{meta['name']}"
            )
        if run is not None and meta.get("deletionTimestamp"):
            run.terminate.set()

    def endpoint(self, namespace: str, pod: str) -> int | None:
        """The loopback port of a pod's Goose server, if it is serving."""
        for run in self.runs.values():
            if run.namespace == namespace and run.name == pod and run.server is not None:
                return run.server.port or None
        return None

    def logs(self, namespace: str, pod: str) -> str:
        for run in self.runs.values():
            if run.namespace == namespace and run.name == pod:
                return "".join(line + "\n" for line in run.log)
        return ""

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

    def _set_status(
        self,
        run: PodRun,
        statuses: list[Obj],
        phase: str,
        ready: bool,
        started: bool = True,
    ) -> Obj | None:
        now = now_iso()
        unready = [s["name"] for s in statuses if not s.get("ready")]

        def change(pod: Obj) -> None:
            status = pod.setdefault("status", {})
            status["phase"] = phase
            status["conditions"] = _merge_conditions(
                status.get("conditions") or [], self._conditions(now, True, started, ready, unready)
            )
            status["containerStatuses"] = statuses
            status["hostIP"] = NODE_IP
            status["hostIPs"] = [{"ip": NODE_IP}]
            if run.ip:
                status["podIP"] = run.ip
                status["podIPs"] = [{"ip": run.ip}]
            status.setdefault("startTime", now)
            status["qosClass"] = (
                "BestEffort"
                if not any(
                    (c.get("resources") or {})
                    for c in (pod.get("spec") or {}).get("containers") or []
                )
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
            if run.server is not None:
                server, run.server = run.server, None
                await server.stop()
            self.runs.pop(run.uid, None)

    async def _lifecycle(self, run: PodRun) -> None:
        delays = self.delays()
        if await run.sleep(delays.schedule):
            return await self._finish(run, [])
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
                return await self._finish(run, [])
        pod = self._pod(run)
        if pod is None:
            return
        self._next_ip = self._next_ip % 250 + 1
        run.ip = f"10.244.0.{self._next_ip + 1}"
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
        waiting = [self._waiting(c, "ContainerCreating") for c in containers]
        self._set_status(run, waiting, "Pending", False, started=False)

        faulty = next((c for c in containers if image_tag(c.get("image", "")) in FAULT_TAGS), None)
        tag = image_tag(faulty.get("image", "")) if faulty else ""
        for c in containers:
            self._event(run, "Normal", "Pulling", f'Pulling image "{c.get("image")}"', c["name"])
        if await run.sleep(delays.pull):
            return await self._finish(run, [])
        if tag == "pull-error" and faulty is not None:
            return await self._pull_error(run, containers, faulty)
        started_at = now_iso()
        self._start_containers(run, containers, first=True)
        if tag in ("crash", "oom") and faulty is not None:
            return await self._crash_loop(run, containers, faulty, tag)
        if await run.sleep(delays.start):
            return await self._finish(run, containers)
        env = {
            e["name"]: str(e.get("value", ""))
            for e in (containers[0].get("env") or [])
            if isinstance(e, dict) and "name" in e
        }
        pod = self._pod(run)
        if pod is None:
            return
        run.server = self.make_server(
            pod, self._project(pod), env, tag != "never-ready", run.log.append
        )
        await run.server.start()
        statuses = [self._running(c, started_at, ready=False) for c in containers]
        self._set_status(run, statuses, "Running", False)
        if await run.sleep(delays.ready + self.delays().slow_readiness):
            return await self._finish(run, containers)
        while True:
            ok = tag != "never-ready" and await self._probe(run, containers[0])
            if ok:
                break
            if containers[0].get("readinessProbe"):
                self._event(
                    run,
                    "Warning",
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503",
                    containers[0]["name"],
                )
            if await run.sleep(self.delays().probe_period):
                return await self._finish(run, containers)
        statuses = [self._running(c, started_at, ready=True) for c in containers]
        self._set_status(run, statuses, "Running", True)
        await run.terminate.wait()
        await self._finish(run, containers)

    async def _probe(self, run: PodRun, container: Obj) -> bool:
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        if not probe or run.server is None:
            return True
        path = probe.get("path", "/")
        try:
            timeout = aiohttp.ClientTimeout(
                total=float(container["readinessProbe"].get("timeoutSeconds", 1))
            )
            async with self.http().get(
                f"http://127.0.0.1:{run.server.port}{path}", timeout=timeout
            ) as response:
                await response.read()
                return 200 <= response.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _start_containers(self, run: PodRun, containers: list[Obj], first: bool) -> None:
        for c in containers:
            if first:
                self._event(
                    run,
                    "Normal",
                    "Pulled",
                    f'Successfully pulled image "{c.get("image")}" in 150ms (150ms including '
                    "waiting). Image size: 52428800 bytes.",
                    c["name"],
                )
            else:
                self._event(
                    run,
                    "Normal",
                    "Pulled",
                    f'Container image "{c.get("image")}" already present on machine',
                    c["name"],
                )
            self._event(run, "Normal", "Created", f"Created container: {c['name']}", c["name"])
            self._event(run, "Normal", "Started", f"Started container {c['name']}", c["name"])

    @staticmethod
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

    @staticmethod
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
            "imageID": qualified_image(c.get("image", "")).rsplit(":", 1)[0]
            + "@sha256:"
            + "0" * 64,
            "containerID": container_id or "containerd://" + secrets.token_hex(32),
            "ready": ready,
            "started": True,
            "restartCount": restarts,
            "state": {"running": {"startedAt": started_at}},
            "lastState": clone(last) if last else {},
        }

    async def _pull_error(self, run: PodRun, containers: list[Obj], faulty: Obj) -> None:
        image = faulty.get("image", "")
        full = qualified_image(image)
        error = (
            f'failed to pull and unpack image "{full}": failed to resolve reference '
            f'"{full}": {full}: not found'
        )
        name = faulty["name"]
        attempt = 0
        while True:
            attempt += 1
            others = [self._waiting(c, "PodInitializing") for c in containers if c is not faulty]
            self._event(run, "Warning", "Failed", f'Failed to pull image "{image}": {error}', name)
            self._event(run, "Warning", "Failed", "Error: ErrImagePull", name)
            self._set_status(
                run, [self._waiting(faulty, "ErrImagePull", error), *others], "Pending", False
            )
            backoff = min(self.delays().backoff * 2 ** (attempt - 1), self.delays().backoff_max)
            if await run.sleep(backoff):
                return await self._finish(run, [])
            self._event(run, "Normal", "BackOff", f'Back-off pulling image "{image}"', name)
            self._event(run, "Warning", "Failed", "Error: ImagePullBackOff", name)
            self._set_status(
                run,
                [
                    self._waiting(
                        faulty,
                        "ImagePullBackOff",
                        f'Back-off pulling image "{image}": ErrImagePull: {error}',
                    ),
                    *others,
                ],
                "Pending",
                False,
            )
            if await run.sleep(backoff):
                return await self._finish(run, [])
            self._event(run, "Normal", "Pulling", f'Pulling image "{image}"', name)
            if await run.sleep(self.delays().pull):
                return await self._finish(run, [])

    async def _crash_loop(self, run: PodRun, containers: list[Obj], faulty: Obj, tag: str) -> None:
        restarts = 0
        last: Obj | None = None
        others_started = now_iso()
        while True:
            started_at = now_iso()
            container_id = "containerd://" + secrets.token_hex(32)
            statuses = [
                self._running(
                    c,
                    started_at if c is faulty else others_started,
                    False,
                    restarts if c is faulty else 0,
                    last if c is faulty else None,
                    container_id if c is faulty else "",
                )
                for c in containers
            ]
            self._set_status(run, statuses, "Running", False)
            if await run.sleep(self.delays().crash):
                return await self._finish(run, [faulty])
            restarts += 1
            oom = tag == "oom"
            last = {
                "terminated": {
                    "exitCode": 137 if oom else 1,
                    "reason": "OOMKilled" if oom else "Error",
                    "startedAt": started_at,
                    "finishedAt": now_iso(),
                    "containerID": container_id,
                }
            }
            shown = min(10 * 2 ** (restarts - 1), 300)
            message = (
                f"back-off {go_duration(shown)} restarting failed container={faulty['name']} "
                f"pod={run.name}_{run.namespace}({run.uid})"
            )
            statuses = [
                self._waiting(faulty, "CrashLoopBackOff", message, restarts, last)
                if c is faulty
                else self._running(c, others_started, False)
                for c in containers
            ]
            self._set_status(run, statuses, "Running", False)
            self._event(
                run,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {faulty['name']} in pod "
                f"{run.name}_{run.namespace}({run.uid})",
                faulty["name"],
            )
            backoff = min(self.delays().backoff * 2 ** (restarts - 1), self.delays().backoff_max)
            if await run.sleep(backoff):
                return await self._finish(run, [])
            self._start_containers(run, [faulty], first=False)

    async def _finish(self, run: PodRun, running: list[Obj]) -> None:
        """Termination: Killing events, grace, then the pod object goes away."""
        pod = self._pod(run)
        if pod is None:
            return
        for c in running:
            self._event(run, "Normal", "Killing", f"Stopping container {c['name']}", c["name"])
        if run.server is not None:
            run.server.healthy = False

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
        if run.server is not None:
            server, run.server = run.server, None
            await server.stop()
        if self._pod(run) is not None:
            self.registry.remove_now(PODS, run.namespace, run.name)
