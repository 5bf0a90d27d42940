"""The API server's service and pod proxy (`.../services/{name}:{port}/proxy/{path}`).

This is how a console outside the cluster reaches a project's agent
(ENDPOINT_MODE=proxy), so it must behave like the real one for streams: forward
method, query and body to a Ready endpoint, pass the response through chunk by chunk
as it arrives (no buffering), propagate a dropped upstream connection as a dropped
connection, close upstream as soon as the client goes away, and answer 503 with a
`Status` when the service has no ready endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from .api import status_json
from .deployments import pod_ready
from .errors import ApiError, not_found
from .registry import Registry
from .resources import PODS, SERVICES, Resource
from .selectors import map_selector_matches

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
}


def split_target(name_port: str) -> tuple[str, str, str]:
    """`[scheme:]name[:port]` -> (scheme, name, port)."""
    parts = name_port.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        if parts[0] in ("http", "https"):
            return parts[0], parts[1], ""
        return "", parts[0], parts[1]
    return "", name_port, ""


def _container_port(pod: dict[str, Any], target: Any) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if target in (
                port.get("name"),
                port.get("containerPort"),
                str(port.get("containerPort")),
            ):
                return int(port["containerPort"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    return None


class ServiceProxy:
    """Forwards proxy requests to the simulated pods' Goose servers."""

    def __init__(
        self,
        registry: Registry,
        endpoint: Callable[[str, str], int | None],
        http: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.http = http
        self._rr = 0

    async def handle(
        self, request: web.Request, res: Resource, namespace: str, name_port: str, subpath: str
    ) -> web.StreamResponse:
        scheme, name, port = split_target(name_port)
        if res is SERVICES:
            pod, target = self._service_backend(namespace, name, port)
        else:
            pod = self.registry.find(PODS, namespace, name)
            if pod is None:
                raise not_found("pods", "", name)
            target = (
                _container_port(pod, port)
                if port
                else _container_port(
                    pod,
                    next(
                        iter(
                            p.get("containerPort")
                            for c in (pod.get("spec") or {}).get("containers") or []
                            for p in c.get("ports") or []
                        ),
                        80,
                    ),
                )
            )
        pod_name = pod["metadata"]["name"]
        local = self.endpoint(namespace, pod_name)
        ip = (pod.get("status") or {}).get("podIP", "10.244.0.1")
        declared = {
            p.get("containerPort")
            for c in (pod.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
        }
        if local is None or (declared and target not in declared):
            return status_json(
                503,
                f"error trying to reach service: dial tcp {ip}:{target}: connect: "
                "connection refused",
                "ServiceUnavailable",
            )
        if scheme == "https":
            return status_json(
                503,
                "error trying to reach service: tls: first record does not look like a TLS "
                "handshake",
                "ServiceUnavailable",
            )
        return await self._forward(request, local, subpath)

    def _service_backend(
        self, namespace: str, name: str, port: str
    ) -> tuple[dict[str, Any], int | None]:
        svc = self.registry.find(SERVICES, namespace, name)
        if svc is None:
            raise not_found("services", "", name)
        ports = (svc.get("spec") or {}).get("ports") or []
        chosen = None
        if port:
            chosen = next((p for p in ports if port in (p.get("name"), str(p.get("port")))), None)
            if chosen is None:
                raise ApiError(
                    503,
                    f'no service port "{port}" found for service "{name}"',
                    "ServiceUnavailable",
                )
        elif ports:
            chosen = ports[0]
        selector = (svc.get("spec") or {}).get("selector")
        ready = [
            p
            for p in self.registry.store.list(PODS.key, namespace)
            if map_selector_matches(selector, p["metadata"].get("labels") or {})
            and pod_ready(p)
            and not p["metadata"].get("deletionTimestamp")
        ]
        if not ready or chosen is None:
            raise ApiError(
                503, f'no endpoints available for service "{name}"', "ServiceUnavailable"
            )
        self._rr += 1
        pod = ready[self._rr % len(ready)]
        return pod, _container_port(pod, chosen.get("targetPort", chosen.get("port")))

    async def _forward(self, request: web.Request, port: int, subpath: str) -> web.StreamResponse:
        url = f"http://127.0.0.1:{port}/{subpath}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        try:
            upstream = await self.http().request(
                request.method,
                url,
                params=request.rel_url.query,
                data=body or None,
                headers=headers,
                allow_redirects=False,
                auto_decompress=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return status_json(503, f"error trying to reach service: {exc}", "ServiceUnavailable")
        complete = False
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except ConnectionResetError:
                return response  # our client went away: nothing left to tell it
            except aiohttp.ClientError:
                # upstream died mid-body: drop our client's connection the same way
                if request.transport is not None:
                    request.transport.abort()
                return response
            try:
                await response.write_eof()
            except ConnectionResetError:
                return response
            complete = True
            return response
        finally:
            # on a client disconnect (cancellation) the upstream connection is closed at once
            if complete:
                upstream.release()
            else:
                upstream.close()
