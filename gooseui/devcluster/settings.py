"""Timings of the simulated cluster and its agents, and where proxied traffic comes from.

Tests want everything fast, benchmarks want zero agent delays, and a demo wants
something closer to a real rollout; every knob is settable from Python and from the
environment (`GOOSEUI_SIM_DELAY_<NAME>`, `GOOSEUI_SIM_AGENT_<NAME>`, seconds). The
service proxy's traffic source (`GOOSEUI_SIM_PROXY_SOURCE`) picks which real cluster
shape the NetworkPolicies are checked against: AKS with konnectivity
(`namespace:kube-system`, the default) or an API server on the host network
(`ip:10.224.0.4`: AKS API Server VNet Integration, kubeadm, kind, k3s).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Delays:
    """Seconds each step of a pod's life takes (defaults total about half a second)."""

    schedule: float = 0.05  # pod created -> bound to the node (Scheduled)
    pull: float = 0.15  # Pulling -> Pulled (or ErrImagePull)
    start: float = 0.05  # Created -> Started (container running)
    ready: float = 0.2  # running -> readiness probe first succeeds
    slow_readiness: float = 0.0  # extra time before Ready (a fault knob)
    terminate: float = 0.15  # Killing -> pod gone
    crash: float = 0.2  # how long a `crash`/`oom` container runs before it exits
    backoff: float = 0.3  # first back-off (image pull, crash loop); doubles
    backoff_max: float = 3.0  # back-off cap
    probe_period: float = 0.5  # readiness re-probe period while not ready
    namespace_finalize: float = 0.05  # a deleted namespace stays Terminating at least this long
    # the API server's dial timeout: a proxied request NetworkPolicy drops hangs this long,
    # then answers 503 "dial tcp <podIP>:<port>: i/o timeout" (30 s on a real API server)
    proxy_dial_timeout: float = 30.0


@dataclass(frozen=True)
class AgentSettings:
    """How the simulated Goose agent replies."""

    delta_delay: float = 0.03  # pause between reply deltas (0 for benchmarks)
    reply_deltas: int | None = None  # None: the natural reply (>= 10 deltas); N: exactly N deltas
    keepalive: float = 2.0  # seconds of silence before an empty `:` comment (real: 15)
    tool_delay: float = 0.05  # pause between tool_request and tool_response


def _from_env(cls: type[T], prefix: str, env: Mapping[str, str], **overrides: Any) -> T:
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        raw = env.get(prefix + f.name.upper())
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = int(raw) if f.name == "reply_deltas" else float(raw)
        except ValueError:
            raise ValueError(f"{prefix}{f.name.upper()} must be a number, got {raw!r}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def delays_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Delays:
    """`Delays` from `GOOSEUI_SIM_DELAY_<FIELD>` variables (e.g. GOOSEUI_SIM_DELAY_PULL=2)."""
    return _from_env(Delays, "GOOSEUI_SIM_DELAY_", os.environ if env is None else env, **overrides)


def agent_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> AgentSettings:
    """`AgentSettings` from `GOOSEUI_SIM_AGENT_<FIELD>` (e.g. GOOSEUI_SIM_AGENT_DELTA_DELAY=0.1)."""
    return _from_env(
        AgentSettings, "GOOSEUI_SIM_AGENT_", os.environ if env is None else env, **overrides
    )


PROXY_SOURCE_ENV = "GOOSEUI_SIM_PROXY_SOURCE"
DEFAULT_PROXY_SOURCE = "namespace:kube-system"


def proxy_source_from_env(env: Mapping[str, str] | None = None) -> str:
    """`GOOSEUI_SIM_PROXY_SOURCE` (`namespace:<ns>` or `ip:<address>`), default kube-system."""
    value = (os.environ if env is None else env).get(PROXY_SOURCE_ENV, "").strip()
    return value or DEFAULT_PROXY_SOURCE


__all__ = [
    "DEFAULT_PROXY_SOURCE",
    "PROXY_SOURCE_ENV",
    "AgentSettings",
    "Delays",
    "agent_from_env",
    "delays_from_env",
    "proxy_source_from_env",
    "replace",
]
