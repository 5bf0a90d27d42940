"""Fault injection into a running simulator from outside its process.

The simulator's fault methods (`SimCluster.fail_requests`, `hang_requests`, …) are reached
over HTTP under `/sim/v1/`, beside the Kubernetes API on the same port and with the same
bearer token as the kubeconfig, so a simulator started on its own (`python -m
gooseui.devcluster`) can be broken and mended from a shell, a test or a demo script:

    python -m gooseui.devcluster fault --kubeconfig K hang --path /
    python -m gooseui.devcluster fault --kubeconfig K clear

These paths are not the cluster's: request faults never apply to them (a hang can always
be cleared), and they are not in discovery, nor counted in `GET /sim/v1/audit` (the
resource requests served by verb and resource, and the watches open; `POST
/sim/v1/audit/reset` reads and starts anew).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .cluster import SimCluster

PREFIX = "/sim/v1/"


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise web.HTTPBadRequest(text=json.dumps({"error": f"{key} must be an integer"}))
    return value


def routes(cluster: SimCluster) -> list[web.RouteDef]:
    """The control routes of `cluster`."""

    def action(work: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
        async def handler(request: web.Request) -> web.Response:
            try:
                body = await request.json() if request.can_read_body else {}
            except ValueError:
                return web.json_response({"error": "the body is not JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "the body must be an object"}, status=400)
            result = work(body)
            return web.json_response({"ok": True, **(result or {})})

        return handler

    def fail(body: dict[str, Any]) -> dict[str, Any]:
        fault = cluster.fail_requests(
            str(body.get("path_prefix", "/")),
            _int(body, "status", 503) or 503,
            _int(body, "count", None),
            body.get("method"),
            _int(body, "retry_after", None),
            body.get("message"),
        )
        return {"fault": _describe(fault)}

    def hang(body: dict[str, Any]) -> dict[str, Any]:
        fault = cluster.hang_requests(
            str(body.get("path_prefix", "/")), _int(body, "count", None), body.get("method")
        )
        return {"fault": _describe(fault)}

    def faults(_: dict[str, Any]) -> dict[str, Any]:
        return {
            "requests": [_describe(f) for f in cluster.faults.requests],
            "agent_database_outage": cluster.agent_databases.outage,
            "watches_frozen": not cluster.faults.watches_flow.is_set(),
        }

    def schedulable(body: dict[str, Any]) -> None:
        cluster.set_nodes_schedulable(bool(body.get("schedulable", True)))

    def outage(body: dict[str, Any]) -> None:
        cluster.set_agent_database_outage(bool(body.get("active", True)))

    def slow(body: dict[str, Any]) -> None:
        cluster.set_slow_readiness(float(body.get("seconds", 0.0)))

    def clear(_: dict[str, Any]) -> None:
        cluster.clear_faults()

    def freeze(_: dict[str, Any]) -> None:
        cluster.freeze_watches()

    def audit(_: dict[str, Any]) -> dict[str, Any]:
        return {"audit": cluster.audit.to_json()}

    def audit_reset(_: dict[str, Any]) -> dict[str, Any]:
        data = cluster.audit.to_json()
        cluster.audit.reset()
        return {"audit": data}

    return [
        web.get(PREFIX + "faults", action(faults)),
        web.post(PREFIX + "faults/requests", action(fail)),
        web.post(PREFIX + "faults/hang", action(hang)),
        web.post(PREFIX + "faults/clear", action(clear)),
        web.post(PREFIX + "faults/freeze-watches", action(freeze)),
        web.post(PREFIX + "nodes/schedulable", action(schedulable)),
        web.post(PREFIX + "agents/database-outage", action(outage)),
        web.post(PREFIX + "pods/slow-readiness", action(slow)),
        web.get(PREFIX + "audit", action(audit)),
        web.post(PREFIX + "audit/reset", action(audit_reset)),
    ]


def _describe(fault: Any) -> dict[str, Any]:
    return {
        "path_prefix": fault.path_prefix,
        "status": fault.status if not fault.hang else None,
        "hang": fault.hang,
        "count": fault.count,
        "method": fault.method,
    }
