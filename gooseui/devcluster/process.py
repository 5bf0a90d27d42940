"""What passes between the simulated kubelet and the agent process it starts.

The kubelet resolves a container's environment and mounted files the way a real kubelet
does (`envFrom`, then `env`, `valueFrom` references; ConfigMap and Secret volumes) and hands
them to the agent in a `Launch`. The agent reads its environment as the real `goose
api-server` does; when it would exit (a missing `MONGODB_URL`, an unreachable database), its
`start()` raises `AgentExit`, and the kubelet terminates the container with that exit code
and restarts it with back-off (CrashLoopBackOff), re-resolving the environment each time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


class AgentExit(Exception):
    """The agent process ended before serving: the container terminates with `code`."""

    def __init__(self, code: int, reason: str = "Error", message: str = "") -> None:
        super().__init__(message or f"exit code {code}")
        self.code = code
        self.reason = reason  # containerStatuses[].lastState.terminated.reason
        self.message = message


@dataclass
class Launch:
    """One start of the agent container."""

    pod: str  # the pod's name
    project: tuple[str, str]  # (namespace, deployment or pod name)
    env: dict[str, str]  # the resolved environment, as the process sees it
    files: dict[str, str] = field(default_factory=dict)  # mounted path -> content
    on_log: Callable[[str], None] = lambda _line: None  # one line of container output
    # the process's command line as a container runtime builds it: the image's ENTRYPOINT
    # and CMD, replaced by the container's `command` / `args` ($(VAR) expanded); empty when
    # a caller does not know it (the agent then listens where the pod declares)
    argv: list[str] = field(default_factory=list)


# The simulated image is the Goose API image: its Dockerfile ends with
# ENTRYPOINT ["/usr/local/bin/goose", "api-server", "--port", "3001", "--host", "0.0.0.0"]
IMAGE_ENTRYPOINT = ("/usr/local/bin/goose", "api-server", "--port", "3001", "--host", "0.0.0.0")
IMAGE_CMD: tuple[str, ...] = ()
IMAGE_PATH = ("/usr/local/bin", "/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
IMAGE_BINARIES = {"/usr/local/bin/goose"}  # what the image has that can be executed


def container_argv(command: list[str] | None, args: list[str] | None) -> list[str]:
    """Kubernetes' rule: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD."""
    if command:
        return [*command, *(args or [])]
    return [*IMAGE_ENTRYPOINT, *(args if args else IMAGE_CMD)]
