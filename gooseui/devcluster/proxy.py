"""The API server's service and pod proxy (`.../services/{name}:{port}/proxy/{path}`).

This is how a console outside the cluster reaches a project's agent
(ENDPOINT_MODE=proxy), so it must behave like the real one for streams: forward every
method with query and body to a Ready endpoint, pass the response through chunk by chunk
as it arrives (no buffering), propagate a dropped upstream connection as a dropped
connection, close upstream as soon as the client goes away, and answer 503 with a
`Status` when the service has no ready endpoint.

The proxied connection crosses the dataplane like any other: it comes from a source (a
konnectivity agent pod in `kube-system` by default, or the API server's host address,
see `netpol.TrafficSource`) and the target pod's NetworkPolicies decide. Dropped traffic
gets no answer: the request hangs until the client gives up, or after the API server's
dial timeout (30 s) ends with 503 `dial tcp <podIP>:<port>: i/o timeout`.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from . import netpol
from .api import status_json
from .deployments import pod_ready
from .errors import ApiError, not_found
from .registry import Registry
from .resources import NAMESPACES, NETWORKPOLICIES, PODS, SERVICES, Resource
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
        endpoint: Callable[[str, str, int | None], int | None],
        http: Callable[[], aiohttp.ClientSession],
        source: Callable[[], netpol.TrafficSource] | None = None,
        dial_timeout: Callable[[], float] | None = None,
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.http = http
        self.source = source or (lambda: netpol.source_from("kube-system"))
        self.dial_timeout = dial_timeout or (lambda: 30.0)
        self.dropped = 0  # requests the NetworkPolicies dropped (for tests and diagnostics)
        self._rr = 0

    def admitted(self, pod: dict[str, Any], port: int) -> bool:
        """Whether the dataplane lets the proxy's connection reach `pod`:`port`."""
        namespace = pod["metadata"].get("namespace", "")
        policies = self.registry.store.list(NETWORKPOLICIES.key, namespace)
        if not policies:
            return True
        source = self.source()
        labels: dict[str, str] = {}
        if source.namespace is not None:
            ns = self.registry.find(NAMESPACES, "", source.namespace)
            labels = (ns or {}).get("metadata", {}).get("labels") or {}
        return netpol.admits(policies, pod, port, source, labels)

    async def _dropped(self, ip: str, port: Any) -> web.Response:
        """No SYN-ACK ever comes: wait out the API server's dial timeout (the client
        usually gives up first, which cancels this handler)."""
        self.dropped += 1
        await asyncio.sleep(self.dial_timeout())
        return status_json(
            503,
            f"error trying to reach service: dial tcp {ip}:{port}: i/o timeout",
            "ServiceUnavailable",
        )

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
        local = self.endpoint(namespace, pod_name, target if isinstance(target, int) else None)
        ip = (pod.get("status") or {}).get("podIP", "10.244.0.1")
        declared = {
            p.get("containerPort")
            for c in (pod.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
        }
        if isinstance(target, int) and not self.admitted(pod, target):
            return await self._dropped(ip, target)
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
                # a file-like payload: aiohttp warns (an error under tests) on large raw bytes
                data=io.BytesIO(body) if body else None,
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
