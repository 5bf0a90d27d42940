"""Client of the Goose API that runs in a project's pod (DESIGN section 6).

One pooled HTTP client for endpoints behind the Kubernetes API server's service proxy
(with the cluster's TLS settings and credentials, refreshed per request) and one for
direct endpoints (in-cluster Service or an external route).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any
from urllib.parse import quote

import httpx

from gooseui.cluster.client import KubeClient
from gooseui.logs import log

logger = logging.getLogger("gooseui.goose")

HEALTH_PATH = "/api/v1/health"
# A reply stream is read with this socket timeout: the agent's keep-alive comments reset it,
# so a live stream is never cut, while a stream that goes silent this long is ended.
STREAM_READ_TIMEOUT = 60.0
OPENING_AT_ONCE = 8


class GooseUnreachable(Exception):
    """The pod's Goose API could not be reached or answered with a failure."""

    def __init__(self, message: str, timeout: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.timeout = timeout
        self.status = status


def _api_server_reason(response: httpx.Response) -> str | None:
    """The API server's own words when it, not the agent, answered (a Kubernetes Status).

    Its messages name the proxy's problem ("no endpoints available", "dial tcp … i/o
    timeout") and carry no agent data, so they may be shown.
    """
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return str(body.get("message") or body.get("reason") or "")[:300] or None
    return None


class _ClusterAuth(httpx.Auth):
    """Adds the API server credentials (a fresh token each time) to proxied requests."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("the Goose client is async only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        for key, value in (await self.kube.auth_headers()).items():
            request.headers[key] = value
        yield request


class GooseClient:
    """Calls to Goose APIs of any project, through pooled connections."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self._proxied: httpx.AsyncClient | None = None
        self._direct: httpx.AsyncClient | None = None
        # Opening a stream may mean a TLS handshake; a burst of a hundred at once would hold
        # the event loop for one long turn. A few at a time keeps every turn short.
        self._opening = asyncio.Semaphore(OPENING_AT_ONCE)

    def proxied(self, endpoint: str) -> bool:
        """Whether the endpoint is the API server's service proxy (not the pod directly)."""
        server = (self.kube.info.server or "").rstrip("/")
        return bool(server) and endpoint.startswith(server + "/")

    def client_for(self, endpoint: str) -> httpx.AsyncClient:
        """The pooled client for an endpoint: through the API server, or direct."""
        timeout = httpx.Timeout(10.0, read=30.0)
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
        if self.proxied(endpoint):
            if self._proxied is None:
                self._proxied = httpx.AsyncClient(
                    verify=self.kube.ssl_context(),
                    auth=_ClusterAuth(self.kube),
                    timeout=timeout,
                    limits=limits,
                )
            return self._proxied
        if self._direct is None:
            self._direct = httpx.AsyncClient(timeout=timeout, limits=limits)
        return self._direct

    def warm(self) -> None:
        """Make both pooled clients now (in a thread at start-up): the first one costs
        hundreds of ms (imports, a TLS context, netrc), a stall of the first activation."""
        server = (self.kube.info.server or "").rstrip("/")
        if server:
            self.client_for(server + "/")
        self.client_for("http://127.0.0.1")

    async def close(self) -> None:
        for client in (self._proxied, self._direct):
            if client is not None:
                await client.aclose()
        self._proxied = self._direct = None

    async def health(self, endpoint: str, wait_seconds: float = 5.0) -> dict[str, Any]:
        """`{"status", "version"}` of the agent; raises `GooseUnreachable` unless it says ok.

        The real agent's health body carries its `mongodb_url`, password included: nothing
        but the status and the version may leave this method, in a result or an error.
        """
        response = await self._call("GET", endpoint, HEALTH_PATH, timeout=wait_seconds)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        status = body.get("status")
        shown = {"status": str(status)[:40] if status is not None else None}
        if body.get("version") is not None:
            shown["version"] = str(body["version"])[:40]
        if response.status_code != 200:
            detail = _api_server_reason(response) or (
                f"status {shown['status']!r}" if status is not None else "no status"
            )
            raise GooseUnreachable(
                f"The agent's health check answered {response.status_code} ({detail}).",
                status=response.status_code,
            )
        if status != "ok":
            raise GooseUnreachable(f"The agent reports it is not healthy (status {status!r}).")
        return shown

    async def busy(self, endpoint: str, wait_seconds: float = 5.0) -> bool:
        """Whether the agent is working on a reply (`overall_status` `processing`), which
        may be one a console replica that went away had started.

        Raises `GooseUnreachable` when the agent cannot say; an older agent without the
        route (404/405) counts as not busy.
        """
        response = await self._call("GET", endpoint, "/api/v1/agent/status", timeout=wait_seconds)
        if response.status_code in (404, 405):
            return False
        if response.status_code != 200:
            raise GooseUnreachable(
                f"The agent's status answered {response.status_code}.",
                status=response.status_code,
            )
        try:
            body = response.json()
        except ValueError:
            body = {}
        return isinstance(body, dict) and body.get("overall_status") == "processing"

    async def _call(self, method: str, endpoint: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        status = 0
        try:
            response = await self.client_for(endpoint).request(method, endpoint + path, **kwargs)
            status = response.status_code
            return response
        except httpx.TimeoutException as exc:
            raise GooseUnreachable(
                f"The agent did not answer in time ({method} {path}).", timeout=True
            ) from exc
        except httpx.HTTPError as exc:
            raise GooseUnreachable(f"The agent cannot be reached: {exc}") from exc
        finally:
            log(
                logger,
                "goose.call",
                method=method,
                path=path,
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )

    async def create_session(self, endpoint: str) -> str:
        response = await self._call("POST", endpoint, "/api/v1/sessions")
        if response.status_code not in (200, 201):
            raise GooseUnreachable(
                f"The agent refused to start a session "
                f"({response.status_code}: {response.text[:200]})",
                status=response.status_code,
            )
        return str(response.json()["session_id"])

    async def session_exists(self, endpoint: str, session_id: str) -> bool:
        """Whether the agent knows the session (`GET /api/v1/sessions/{id}`: 200 or 404)."""
        response = await self._call(
            "GET", endpoint, f"/api/v1/sessions/{quote(session_id, safe='')}"
        )
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise GooseUnreachable(
            f"The agent could not look up the session ({response.status_code}).",
            status=response.status_code,
        )

    async def history(self, endpoint: str, session_id: str) -> dict[str, Any] | None:
        """The session's messages, or None when the agent does not know the session.

        An older agent image has no history route (405): its history is empty, not an error.
        """
        response = await self._call(
            "GET", endpoint, f"/api/v1/sessions/{quote(session_id, safe='')}/messages"
        )
        if response.status_code == 404:
            return None
        if response.status_code == 405:
            return {"session_id": session_id, "messages": [], "total_count": 0}
        if response.status_code != 200:
            raise GooseUnreachable(
                f"The agent could not return the history "
                f"({response.status_code}: {response.text[:200]})",
                status=response.status_code,
            )
        return response.json()

    async def open_reply(self, endpoint: str, session_id: str, message: str) -> httpx.Response:
        """Send a message and return the open reply stream (status not yet checked).

        The caller must close the response: closing it closes the upstream request at once.
        """
        client = self.client_for(endpoint)
        request = client.build_request(
            "POST",
            f"{endpoint}/api/v1/sessions/{quote(session_id, safe='')}/messages",
            json={"message": message},
            headers={"Accept": "text/event-stream"},
            timeout=httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT),
        )
        started = time.perf_counter()
        try:
            async with self._opening:
                response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise GooseUnreachable(
                "The agent did not accept the message in time.", timeout=True
            ) from exc
        except httpx.HTTPError as exc:
            raise GooseUnreachable(f"The agent cannot be reached: {exc}") from exc
        log(
            logger,
            "goose.call",
            method="POST",
            path="/api/v1/sessions/{id}/messages",
            status=response.status_code,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response
