"""A small Kubernetes REST client on kubernetes-asyncio's `ApiClient`.

kubernetes-asyncio supplies configuration loading (kubeconfig, exec plugins, in-cluster),
TLS and authentication; requests go through its `ApiClient.call_api` with raw JSON bodies
so that every kind, a Gateway API HTTPRoute included, is applied and read the same way,
as plain Kubernetes JSON. On top of it this module adds what the library leaves out: a
timeout on every call, retries with backoff for idempotent calls (honouring Retry-After),
token refresh for exec plugins (AKS kubelogin), a separate connection pool for long watch
streams, and one log line per call carrying the request's correlation id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from gooseui.errors import Unavailable
from gooseui.logs import log

logger = logging.getLogger("gooseui.k8s")

FIELD_MANAGER = "gooseui"
CALL_TIMEOUT = 10.0
"""The longest one attempt of a call may take: a slow list of a big cluster still answers."""
CALL_BUDGET = 12.0
"""The longest a call may take with its retries: a hanging API server is reported as
`ClusterUnavailable` within it, and an activation fails within 15 s, not minutes."""
RETRY_STATUSES = {429, 500, 502, 503, 504}
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)
MAX_RETRY_AFTER = 5.0
MAX_LINE = 16384
"""The longest line of a streamed text answer kept whole (a log line is cut there)."""

# kind -> (group-version path, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("api/v1", "namespaces", False),
    "Pod": ("api/v1", "pods", True),
    "Service": ("api/v1", "services", True),
    "Event": ("api/v1", "events", True),
    "Secret": ("api/v1", "secrets", True),
    "ConfigMap": ("api/v1", "configmaps", True),
    "LimitRange": ("api/v1", "limitranges", True),
    "ResourceQuota": ("api/v1", "resourcequotas", True),
    "Deployment": ("apis/apps/v1", "deployments", True),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies", True),
    "Ingress": ("apis/networking.k8s.io/v1", "ingresses", True),
    "HTTPRoute": ("apis/gateway.networking.k8s.io/v1", "httproutes", True),
}


class ClusterUnavailable(Unavailable):
    """No cluster is configured, or its API server does not answer."""

    code = "ClusterUnavailable"


class KubeError(Exception):
    """The API server answered with a failure `Status`."""

    def __init__(
        self, status: int, reason: str, message: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}


def path_for(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """The REST path of a kind's collection, or of one object when `name` is given."""
    group_version, plural, namespaced = KINDS[kind]
    path = f"/{group_version}"
    if namespaced and namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
    return path


def path_of(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return path_for(obj["kind"], meta.get("namespace"), meta["name"])


@dataclass
class ClusterInfo:
    """What the console is connected to, for the operator's header."""

    configured: bool
    label: str
    in_cluster: bool = False
    server: str | None = None
    problem: str | None = None


class KubeClient:
    """Calls to one Kubernetes API server."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self.configuration: k8s_client.Configuration | None = None
        self._api: k8s_client.ApiClient | None = None
        self._stream_api: k8s_client.ApiClient | None = None
        self.info = ClusterInfo(configured=False, label="no cluster")
        self.streams_open = 0  # text streams (`open_lines`) not closed yet

    # set-up ----------------------------------------------------------------------------

    async def connect(self) -> ClusterInfo:
        """Load credentials: KUBECONFIG, then ~/.kube/config, then in-cluster. Never raises."""
        configuration = k8s_client.Configuration()
        paths = self._kubeconfig or os.environ.get("KUBECONFIG")
        default = Path.home() / ".kube" / "config"
        try:
            if paths or default.is_file():
                loader = await k8s_config.load_kube_config(
                    config_file=paths or str(default),
                    context=self._context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                _install_exec_refresh(configuration, loader)
                active = getattr(loader, "current_context", None) or {}
                name = self._context or active.get("name") or "kubeconfig"
                self.info = ClusterInfo(True, f"context {name}", server=configuration.host)
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(client_configuration=configuration)
                self.info = ClusterInfo(
                    True, "in-cluster", in_cluster=True, server=configuration.host
                )
            else:
                self.info = ClusterInfo(
                    False,
                    "no cluster",
                    problem="No Kubernetes cluster is configured: set KUBECONFIG (or create "
                    "~/.kube/config), run the console inside a cluster, or try "
                    "`gooseui --simulate`.",
                )
                return self.info
        except Exception as exc:  # a broken kubeconfig must not stop the console
            self.info = ClusterInfo(
                False,
                "no cluster",
                problem=f"The Kubernetes configuration could not be loaded: {exc}".splitlines()[0],
            )
            log(logger, "k8s.config_failed", logging.WARNING, error=self.info.problem)
            return self.info
        self.configuration = configuration
        self._api = k8s_client.ApiClient(configuration)
        self._stream_api = k8s_client.ApiClient(configuration)
        log(logger, "k8s.configured", cluster=self.info.label, server=self.info.server)
        return self.info

    async def close(self) -> None:
        for api in (self._api, self._stream_api):
            if api is not None:
                await api.close()
        self._api = self._stream_api = None

    def _require(self, stream: bool = False) -> k8s_client.ApiClient:
        api = self._stream_api if stream else self._api
        if api is None:
            raise ClusterUnavailable(self.info.problem or "The cluster client is not connected.")
        return api

    # requests --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        idempotent: bool = True,
        request_timeout: float = CALL_TIMEOUT,
        budget: float = CALL_BUDGET,
    ) -> dict[str, Any]:
        """One API call returning its JSON; failures raise `KubeError` or `ClusterUnavailable`.

        Retries (idempotent calls only) stop at `budget` seconds from the start, and each
        attempt gets what is left of it: however the API server fails, refusing or hanging,
        the caller has an answer within `budget`.
        """
        return _json(
            await self._exchange(
                method,
                path,
                query=query,
                body=body,
                content_type=content_type,
                accept="application/json",
                idempotent=idempotent,
                request_timeout=request_timeout,
                budget=budget,
            )
        )

    async def get_text(
        self,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        request_timeout: float = CALL_TIMEOUT,
        budget: float = CALL_BUDGET,
    ) -> str:
        """A GET answering plain text (`pods/{name}/log`), with `request`'s retries, timeouts,
        errors and log line."""
        raw = await self._exchange(
            "GET",
            path,
            query=query,
            body=None,
            content_type="application/json",
            accept="text/plain, */*",
            idempotent=True,
            request_timeout=request_timeout,
            budget=budget,
        )
        return raw.decode("utf-8", "replace")

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None,
        body: Any,
        content_type: str,
        accept: str,
        idempotent: bool,
        request_timeout: float,
        budget: float,
    ) -> bytes:
        """One API call (with its retries) returning the body of its 2xx answer."""
        api = self._require()
        attempts = len(RETRY_DELAYS) + 1 if idempotent else 1
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        deadline = time.monotonic() + budget

        async def pause(seconds: float) -> bool:
            """Sleep before the next attempt, or say there is no time left for one."""
            if time.monotonic() + seconds + 0.1 >= deadline:
                return False
            await asyncio.sleep(seconds)
            return True

        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            attempt_timeout = max(0.1, min(request_timeout, deadline - time.monotonic()))
            try:
                response = await api.call_api(
                    path,
                    method,
                    query_params=list(params),
                    header_params={"Content-Type": content_type, "Accept": accept},
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=attempt_timeout,
                )
                try:
                    raw = await response.read()
                finally:
                    response.release()
                status = response.status
            except k8s_config.ConfigException as exc:  # e.g. kubelogin could not refresh
                raise ClusterUnavailable(
                    f"The cluster credentials could not be loaded: {exc}"
                ) from exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                ms = round((time.perf_counter() - started) * 1000, 1)
                error = f"{type(exc).__name__}: {exc}".strip(": ")
                log(
                    logger,
                    "k8s.call",
                    logging.WARNING,
                    method=method,
                    path=path,
                    status=0,
                    ms=ms,
                    attempt=attempt,
                    error=error,
                )
                if attempt < attempts and await pause(RETRY_DELAYS[attempt - 1]):
                    continue
                raise ClusterUnavailable(
                    f"The Kubernetes API server at {self.info.server} does not answer ({error})."
                ) from exc
            ms = round((time.perf_counter() - started) * 1000, 1)
            log(logger, "k8s.call", method=method, path=path, status=status, ms=ms, attempt=attempt)
            if 200 <= status < 300:
                return raw
            error = _kube_error(status, _json(raw), raw)
            if (
                status in RETRY_STATUSES
                and attempt < attempts
                and await pause(_retry_delay(response.headers, attempt))
            ):
                continue
            if status in RETRY_STATUSES:
                raise ClusterUnavailable(
                    f"The Kubernetes API server keeps failing ({status} {error.reason}: "
                    f"{error.message})."
                ) from error
            raise error
        raise AssertionError("unreachable")

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str | None = None) -> dict[str, Any]:
        return await self.request("GET", path, query={"labelSelector": label_selector})

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the field manager `gooseui`, forcing ownership."""
        return await self.request(
            "PATCH",
            path_of(obj),
            body=obj,
            content_type="application/apply-patch+yaml",
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
        )

    async def delete(self, path: str, propagation: str = "Foreground") -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.request(
                "DELETE",
                path,
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def version(self, budget: float = 5.0) -> dict[str, Any]:
        return await self.request("GET", "/version", request_timeout=budget, budget=budget)

    async def watch(
        self,
        path: str,
        *,
        resource_version: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 60,
        idle_seconds: float | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Events of a watch until the server ends it; a 410 raises `KubeError(410)`.

        Runs on its own connection pool so that long streams never hold up plain calls.
        With `idle_seconds`, a stream that sends nothing for that long (the API server sends
        a bookmark a minute to a watch that asks for them) raises `ClusterUnavailable`:
        a connection stuck mid-stream is not a quiet cluster. `on_open` is called once the
        API server has answered 200.
        """
        api = self._require(stream=True)
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        response = await self._open_stream(
            api, "WATCH", path, query, "application/json", (CALL_TIMEOUT, timeout_seconds + 15)
        )
        try:
            if response.status != 200:
                raw = await response.read()
                raise _kube_error(response.status, _json(raw), raw)
            if on_open is not None:
                on_open()
            lines = response.content.__aiter__()
            while True:
                try:
                    async with asyncio.timeout(idle_seconds):
                        line = await lines.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise ClusterUnavailable(
                        f"The watch of {path} at {self.info.server} went silent: nothing "
                        f"(not even a bookmark) for {idle_seconds:g} s."
                    ) from None
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise _kube_error(int(status.get("code") or 500), status, line)
                yield event
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
            return  # the stream ended early; the caller re-lists and watches again
        finally:
            response.release()

    async def open_lines(
        self, path: str, *, query: dict[str, Any] | None = None, max_line: int = MAX_LINE
    ) -> TextStream:
        """Open a streamed plain-text answer (`pods/{name}/log?follow=true`): a failure
        answer raises `KubeError` here, before any line; the `TextStream` then yields the
        lines as the API server writes them, until it ends the stream or the caller closes
        it (which closes the connection: nothing keeps reading upstream).

        Runs on the stream pool, like watches. The headers must come within CALL_TIMEOUT;
        after that there is no read timeout (a quiet container writes nothing for hours).
        """
        api = self._require(stream=True)
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        # no read timeout: a quiet container writes nothing for hours
        timeout = aiohttp.ClientTimeout(connect=CALL_TIMEOUT, sock_connect=CALL_TIMEOUT)
        response = await self._open_stream(api, "GET", path, params, "text/plain, */*", timeout)
        if response.status != 200:
            try:
                raw = await response.read()
            finally:
                response.release()
            raise _kube_error(response.status, _json(raw), raw)
        self.streams_open += 1
        return TextStream(response, max_line, on_close=self._stream_closed)

    async def _open_stream(
        self,
        api: k8s_client.ApiClient,
        label: str,
        path: str,
        query: list[tuple[str, str]],
        accept: str,
        request_timeout: Any,
    ) -> Any:
        """A streamed GET on the stream pool, its headers within CALL_TIMEOUT (an API server
        answers them at once; one that does not is hanging), with its `k8s.call` line
        (`label`: WATCH or GET); the caller reads and releases the answer."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                response = await api.call_api(
                    path,
                    "GET",
                    query_params=query,
                    header_params={"Accept": accept},
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=request_timeout,
                )
        except k8s_config.ConfigException as exc:
            raise ClusterUnavailable(f"The cluster credentials could not be loaded: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log(
                logger,
                "k8s.call",
                logging.WARNING,
                method=label,
                path=path,
                status=0,
                ms=round((time.perf_counter() - started) * 1000, 1),
                stream=True,
                error=f"{type(exc).__name__}: {exc}".strip(": "),
            )
            raise ClusterUnavailable(
                f"The Kubernetes API server at {self.info.server} does not answer ({exc})."
            ) from exc
        log(
            logger,
            "k8s.call",
            method=label,
            path=path,
            status=response.status,
            ms=round((time.perf_counter() - started) * 1000, 1),
            stream=True,
        )
        return response

    def _stream_closed(self) -> None:
        self.streams_open -= 1

    # for the service proxy -------------------------------------------------------------

    async def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a raw request to the API server (refreshing tokens)."""
        if self.configuration is None:
            raise ClusterUnavailable(self.info.problem or "No cluster configured.")
        headers: dict[str, str] = {}
        queries: list[Any] = []
        try:
            await self._require().update_params_for_auth(headers, queries, ["BearerToken"])
        except k8s_config.ConfigException as exc:
            raise ClusterUnavailable(f"The cluster credentials could not be loaded: {exc}") from exc
        return headers

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings of the API server connection, for other HTTP clients."""
        cfg = self.configuration
        if cfg is None:
            return True
        if not cfg.verify_ssl:
            return False
        context = (
            ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.ssl_ca_cert
            else ssl.create_default_context()
        )
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        return context


class TextStream:
    """The lines of an open streamed answer (`KubeClient.open_lines`), decoded, without their
    line ends; a line longer than `max_line` characters is cut there. A connection lost
    mid-stream ends it. `aclose()` closes the connection, however far it was read."""

    def __init__(
        self, response: Any, max_line: int = MAX_LINE, on_close: Callable[[], None] | None = None
    ) -> None:
        self._response = response
        self._max_line = max_line
        self._on_close = on_close
        self._lines = self._read()
        self.closed = False

    async def _read(self) -> AsyncGenerator[str, None]:
        limit = self._max_line
        pending = b""
        try:
            async for chunk in self._response.content.iter_any():
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield _cut(line.decode("utf-8", "replace").removesuffix("\r"), limit)
                if len(pending) > limit * 4:  # a line with no end in sight
                    yield _cut(pending.decode("utf-8", "replace"), limit)
                    pending = b""
            if pending:
                yield _cut(pending.decode("utf-8", "replace"), limit)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
            return  # the stream ended early (the API server or the kubelet went away)
        finally:
            self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._response.close()  # not release(): an unfinished stream is not drained
            if self._on_close is not None:
                self._on_close()

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        if self.closed:
            raise StopAsyncIteration
        return await self._lines.__anext__()

    async def aclose(self) -> None:
        self._close()
        # a task still reading sees the connection end, and ends the generator itself
        with contextlib.suppress(RuntimeError):
            await self._lines.aclose()


def _install_exec_refresh(configuration: k8s_client.Configuration, loader: Any) -> None:
    """Re-run an exec credential plugin (AKS kubelogin) when its token nears expiry.

    kubernetes-asyncio runs the plugin once at load; the refresh hook is consulted before
    every request, and the loader only re-runs the plugin when the token has expired.
    """
    user = getattr(loader, "_user", None)
    if not user or "exec" not in user:
        return

    async def refresh(cfg: k8s_client.Configuration) -> None:
        if await loader.load_from_exec_plugin() and getattr(loader, "token", None):
            cfg.api_key["BearerToken"] = loader.token

    configuration.refresh_api_key_hook = refresh


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _kube_error(status: int, data: dict[str, Any], raw: bytes | str) -> KubeError:
    reason = data.get("reason") or {
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        410: "Expired",
        422: "Invalid",
        429: "TooManyRequests",
    }.get(status, "Error")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    message = data.get("message") or text.strip()[:300] or f"HTTP {status}"
    return KubeError(status, reason, message, data)


def _retry_delay(headers: Any, attempt: int) -> float:
    retry_after = headers.get("Retry-After") if headers is not None else None
    if retry_after:
        try:
            return min(float(retry_after), MAX_RETRY_AFTER)
        except ValueError:
            pass
    return RETRY_DELAYS[attempt - 1]
