"""Injected faults: API errors and misbehaving agents.

The faults that belong to cluster objects (unschedulable node, quota, bad images)
are expressed through those objects; what remains lives here: the next N API calls
on a path failing with a status, and agents that die mid-stream or split their
events across many small network writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .errors import REASONS, ApiError


@dataclass
class RequestFault:
    """Fail matching API requests with `status` (`count=None`: until cleared)."""

    path_prefix: str
    status: int
    count: int | None = 1
    method: str | None = None
    retry_after: int | None = None
    message: str | None = None
    # no answer at all (an overloaded or partitioned API server): the request is held
    # until the fault is cleared, and then served as if nothing had happened
    hang: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and (
            self.method is None or self.method.upper() == method.upper()
        )

    def error(self) -> ApiError:
        reason = REASONS.get(self.status, "InternalError")
        message = self.message or {
            429: "Too many requests, please try again later.",
            500: "Internal error occurred: injected fault",
            503: "The server is currently unable to handle the request",
            504: "The server was unable to return a response in the time allotted, but may still "
            "be processing the request",
        }.get(self.status, f"injected fault ({self.status})")
        details = None
        headers = {}
        retry_after = self.retry_after
        if retry_after is None and self.status == 429:
            retry_after = 1  # the API server always tells a throttled client when to retry
        if retry_after is not None:
            details = {"retryAfterSeconds": retry_after}
            headers["Retry-After"] = str(retry_after)
        return ApiError(self.status, message, reason, details, headers)


@dataclass
class AgentFault:
    """Misbehaviour for the agents of one project (or all when namespace is None)."""

    namespace: str | None = None
    deployment: str | None = None
    die_after_events: int | None = None
    split_chunk_size: int | None = None
    split_pause: float = 0.005
    count: int | None = None  # streams affected; None = until cleared

    def matches(self, namespace: str, deployment: str) -> bool:
        return (self.namespace is None or self.namespace == namespace) and (
            self.deployment is None or self.deployment == deployment
        )


@dataclass
class StreamBehaviour:
    """What one reply stream must do, resolved when the stream starts."""

    die_after_events: int | None = None
    split_chunk_size: int | None = None
    split_pause: float = 0.0


class Faults:
    """The fault table consulted by the API server and the simulated agents."""

    def __init__(self) -> None:
        self.requests: list[RequestFault] = []
        self.agents: list[AgentFault] = []
        # set while watches flow; cleared, every open watch (and every new one) sends nothing
        # at all, not even a bookmark, and stays open: an API server stuck mid-stream
        self.watches_flow = asyncio.Event()
        self.watches_flow.set()

    def add_request_fault(self, fault: RequestFault) -> RequestFault:
        self.requests.append(fault)
        return fault

    def take_request_fault(self, method: str, path: str) -> RequestFault | None:
        """The fault for this request, consuming one use of it."""
        for fault in list(self.requests):
            if fault.matches(method, path):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0 and not fault.hang:  # a hang holds until cleared
                        self.requests.remove(fault)
                return fault
        return None

    def add_agent_fault(self, fault: AgentFault) -> AgentFault:
        self.agents.append(fault)
        return fault

    def stream_behaviour(self, namespace: str, deployment: str) -> StreamBehaviour:
        """Combine the agent faults that apply to a new stream of this project."""
        behaviour = StreamBehaviour()
        for fault in list(self.agents):
            if not fault.matches(namespace, deployment):
                continue
            if fault.die_after_events is not None:
                behaviour.die_after_events = fault.die_after_events
            if fault.split_chunk_size is not None:
                behaviour.split_chunk_size = fault.split_chunk_size
                behaviour.split_pause = fault.split_pause
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.agents.remove(fault)
        return behaviour

    def clear(self) -> None:
        for fault in self.requests:
            fault.released.set()
        self.requests.clear()
        self.agents.clear()
        self.watches_flow.set()
