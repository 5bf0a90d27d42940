"""What the simulated API server was asked, as an API server's audit log counts it.

Each resource request is counted by verb (get, list, watch, create, update, patch, delete,
deletecollection, as RBAC names them), API group, resource (with its subresource) and
scope (one namespace or the whole cluster), and the watches open are kept as a gauge with
its peak. The counts answer questions a benchmark and an RBAC review both ask: how many
calls did an activation cost, how many watches does the console hold, and which verbs on
which resources did it use.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Call:
    """One kind of request: `verb` on `group`/`resource` in a namespace or cluster-wide."""

    verb: str
    group: str
    resource: str
    cluster_wide: bool


def verb_of(method: str, named: bool, watch: bool) -> str:
    """The RBAC verb of a request (a GET is `get`, `list` or `watch` by its form)."""
    if method == "GET":
        return "get" if named else ("watch" if watch else "list")
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return VERBS.get(method, method.lower())


@dataclass
class Audit:
    """Counts of the resource requests served, and the watches open now and at most."""

    calls: Counter[Call] = field(default_factory=Counter)
    watches_open: int = 0
    watches_peak: int = 0

    def record(self, call: Call) -> None:
        self.calls[call] += 1

    def watch_opened(self) -> None:
        self.watches_open += 1
        self.watches_peak = max(self.watches_peak, self.watches_open)

    def watch_closed(self) -> None:
        self.watches_open -= 1

    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        """Start counting again (the open watches stay open, and become the peak)."""
        self.calls.clear()
        self.watches_peak = self.watches_open

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total(),
            "watches_open": self.watches_open,
            "watches_peak": self.watches_peak,
            "calls": [
                {
                    "verb": call.verb,
                    "group": call.group,
                    "resource": call.resource,
                    "cluster_wide": call.cluster_wide,
                    "count": count,
                }
                for call, count in sorted(
                    self.calls.items(), key=lambda item: (item[0].resource, item[0].verb)
                )
            ],
        }
