"""The HTTP face of the simulated API server (aiohttp).

Routes Kubernetes REST paths to the registry, streams watches as newline-delimited
JSON, answers discovery and OpenAPI, checks the bearer token, injects request
faults, and hands `.../proxy/...` paths to the service proxy. Errors always leave
as `Status` bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import discovery, openapi, protobuf, tables
from . import logs as podlogs
from .audit import Audit, Call, verb_of
from .errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    not_found,
    status_body,
    success_status,
)
from .faults import Faults
from .registry import DeleteOptions, Registry, parse_body
from .resources import NAMESPACES, PODS, Resource, in_group_version, lookup
from .store import Obj

log = logging.getLogger(__name__)

ProxyHandler = Callable[[web.Request, Resource, str, str, str], Awaitable[web.StreamResponse]]
# (pod, container, previous) -> the container instance's log, None for an empty answer
LogSource = Callable[[Obj, str, bool], podlogs.ContainerLog | None]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(err: ApiError) -> web.Response:
    return _json(err.status(), err.code, err.headers)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


@dataclass
class Target:
    """A parsed resource URL."""

    res: Resource
    namespace: str | None
    name: str | None
    subresource: str
    subpath: str


def parse_target(group: str, version: str, tail: str) -> Target:
    """Split `namespaces/ns/plural/name/sub/rest...` (404 for an unknown resource)."""
    parts = tail.split("/") if tail else []
    if not parts or not parts[0]:
        raise not_found("", group, "")
    namespaced = {r.plural for r in in_group_version(group, version) if r.namespaced}
    if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] in namespaced:
        namespace: str | None = parts[1]
        rest = parts[2:]
    else:
        namespace = None
        rest = parts
    res = lookup(group, version, rest[0])
    if res is None:
        raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
    name = rest[1] if len(rest) > 1 and rest[1] != "" else None
    sub = rest[2] if len(rest) > 2 else ""
    subpath = "/".join(rest[3:])
    if sub and sub not in res.subresources:
        raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
    return Target(res, namespace, name, sub, subpath)


def _call_of(request: web.Request) -> Call | None:
    """The audit entry of a resource request (None for discovery and everything else)."""
    parts = request.path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, version, tail = "", parts[1], "/".join(parts[2:])
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, tail = parts[1], parts[2], "/".join(parts[3:])
    else:
        return None
    try:
        target = parse_target(group, version, tail)
    except ApiError:
        return None
    resource = target.res.plural + (f"/{target.subresource}" if target.subresource else "")
    watch = _truthy(request.query.get("watch"))
    verb = verb_of(request.method, target.name is not None, watch)
    return Call(verb, group, resource, target.namespace is None)


def manager_of(request: web.Request) -> str:
    """`fieldManager`, else the User-Agent prefix (what the API server records)."""
    manager = request.query.get("fieldManager")
    if manager:
        return manager
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/")[0].strip() or "unknown"


def _list_body(res: Resource, items: list[Obj], rv: int) -> dict[str, Any]:
    builtin = res.group != "gateway.networking.k8s.io"
    if builtin:
        rendered = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in items]
    else:
        rendered = items
    return {
        "kind": res.list_kind,
        "apiVersion": res.api_version,
        "metadata": {"resourceVersion": str(rv)},
        "items": rendered,
    }


class ApiServer:
    """Builds the aiohttp application of the simulated API server."""

    def __init__(
        self,
        registry: Registry,
        faults: Faults,
        token: str,
        proxy: ProxyHandler | None = None,
        logs: LogSource | None = None,
        control: list[web.RouteDef] | None = None,
    ) -> None:
        self.control = control or []
        self.registry = registry
        self.faults = faults
        self.token = token
        self.proxy = proxy
        self.logs = logs
        self.server_address = "127.0.0.1:0"
        self.requests_served = 0
        self.audit = Audit()
        self.bookmark_seconds = 60.0  # the watch cache's bookmark frequency
        self._watch_tasks: set[asyncio.Task[Any]] = set()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.add_routes(self.control)  # /sim/v1/: fault injection from outside the process
        app.router.add_route("*", "/version", self._version)
        app.router.add_route("*", "/healthz", self._health)
        app.router.add_route("*", "/livez", self._health)
        app.router.add_route("*", "/readyz", self._health)
        # discovery answers with and without the trailing slash (the official Python
        # client's get_api_resources() asks /api/v1/), as the real server does
        app.router.add_route("*", "/api", self._api)
        app.router.add_route("*", "/api/", self._api)
        app.router.add_route("*", "/apis", self._apis)
        app.router.add_route("*", "/apis/", self._apis)
        app.router.add_route("*", "/openapi/v3", self._openapi_index)
        app.router.add_route("*", "/openapi/v3/{path:.*}", self._openapi_doc)
        app.router.add_route("*", "/api/{version}", self._core_resources)
        app.router.add_route("*", "/api/{version}/{tail:.*}", self._core)
        app.router.add_route("*", "/apis/{group}", self._group)
        app.router.add_route("*", "/apis/{group}/", self._group)
        app.router.add_route("*", "/apis/{group}/{version}", self._group_resources)
        app.router.add_route("*", "/apis/{group}/{version}/{tail:.*}", self._grouped)
        return app

    # ------------------------------------------------------------ middleware

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests_served += 1
        path = request.path
        if path not in ("/healthz", "/livez", "/readyz"):
            if request.headers.get("Authorization", "") != f"Bearer {self.token}":
                return error_response(ApiError(401, "Unauthorized", "Unauthorized"))
        call = _call_of(request)
        if call is not None:  # counted whatever the answer, as an audit log does
            self.audit.record(call)
        # the simulator's own control paths are never faulted: a hang can always be cleared
        fault = (
            None
            if path.startswith("/sim/")
            else self.faults.take_request_fault(request.method, path)
        )
        if fault is not None and fault.hang:
            await fault.released.wait()
        elif fault is not None:
            return error_response(fault.error())
        try:
            return await handler(request)
        except ApiError as err:
            return error_response(err)
        except web.HTTPException as exc:
            if exc.status == 404:
                return error_response(
                    ApiError(
                        404, "the server could not find the requested resource", "NotFound", {}
                    )
                )
            if exc.status == 405:
                return error_response(method_not_allowed())
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            log.exception("simulated API server failed on %s %s", request.method, path)
            return error_response(ApiError(500, f"Internal error occurred: {exc}", "InternalError"))

    # ------------------------------------------------------------ discovery

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.Response:
        return _json(discovery.version_info())

    async def _api(self, request: web.Request) -> web.Response:
        return _json(discovery.core_versions(self.server_address))

    async def _apis(self, request: web.Request) -> web.Response:
        return _json(discovery.group_list())

    async def _group(self, request: web.Request) -> web.Response:
        body = discovery.group(request.match_info["group"])
        if body is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        return _json(body)

    async def _core_resources(self, request: web.Request) -> web.Response:
        return self._resource_list("", request.match_info["version"])

    async def _group_resources(self, request: web.Request) -> web.Response:
        return self._resource_list(request.match_info["group"], request.match_info["version"])

    def _resource_list(self, group: str, version: str) -> web.Response:
        body = discovery.resource_list(group, version)
        if body is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        return _json(body)

    async def _openapi_index(self, request: web.Request) -> web.Response:
        return _json(openapi.index())

    async def _openapi_doc(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].strip("/").split("/")
        doc = None
        if len(parts) == 2 and parts[0] == "api":
            doc = openapi.document("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = openapi.document(parts[1], parts[2])
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        return _json(doc)

    # ------------------------------------------------------------ resources

    async def _core(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["tail"] == "":
            return self._resource_list("", request.match_info["version"])
        return await self._dispatch(
            request, "", request.match_info["version"], request.match_info["tail"]
        )

    async def _grouped(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        if m["tail"] == "":
            return self._resource_list(m["group"], m["version"])
        return await self._dispatch(request, m["group"], m["version"], m["tail"])

    async def _dispatch(
        self, request: web.Request, group: str, version: str, tail: str
    ) -> web.StreamResponse:
        target = parse_target(group, version, tail)
        method = request.method
        if target.subresource == "proxy":
            if self.proxy is None or target.res.plural not in ("services", "pods"):
                raise method_not_allowed()
            return await self.proxy(
                request, target.res, target.namespace or "", target.name or "", target.subpath
            )
        if target.res.namespaced and target.namespace is None and (target.name or method != "GET"):
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if method == "GET":
            if target.name is None:
                if _truthy(request.query.get("watch")):
                    return await self._watch(request, target)
                return self._list(request, target)
            if target.res is PODS and target.subresource == "log":
                return await self._log(request, target)
            return self._get(request, target)
        if method == "POST":
            return await self._post(request, target)
        if method == "PUT":
            return await self._put(request, target)
        if method == "PATCH":
            return await self._patch(request, target)
        if method == "DELETE":
            return await self._delete(request, target)
        raise method_not_allowed()

    def _render(
        self, request: web.Request, target: Target, obj: Obj, status: int = 200
    ) -> web.Response:
        if tables.wants_table(request.headers.get("Accept", "")) and not target.subresource:
            return _json(
                tables.table(target.res.plural, [obj], obj["metadata"].get("resourceVersion")),
                status,
            )
        return _json(obj, status)

    def _get(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        obj = self.registry.get(target.res, target.namespace or "", target.name)
        if target.subresource == "scale":
            return _json(self.registry.scale_of(target.res, obj))
        return self._render(request, target, obj)

    async def _log(self, request: web.Request, target: Target) -> web.StreamResponse:
        """`pods/{name}/log`: the API server checks the pod and the container, the
        kubelet chooses the container instance from the status and streams its lines."""
        assert target.name is not None
        pod = self.registry.get(PODS, target.namespace or "", target.name)
        options = podlogs.parse_options(dict(request.query), target.name)
        container = podlogs.choose_container(pod, options.container)
        log = self.logs(pod, container, options.previous) if self.logs else None
        return await podlogs.serve(request, log, options)

    def _list(self, request: web.Request, target: Target) -> web.Response:
        q = request.query
        items, rv = self.registry.list(
            target.res, target.namespace, q.get("labelSelector"), q.get("fieldSelector")
        )
        if tables.wants_table(request.headers.get("Accept", "")):
            return _json(tables.table(target.res.plural, items, str(rv)))
        return _json(_list_body(target.res, items, rv))

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        predicate = self.registry.predicate(q.get("labelSelector"), q.get("fieldSelector"))
        rv_text = q.get("resourceVersion", "")
        send_initial = _truthy(q.get("sendInitialEvents"))
        since: int | None = None
        if rv_text not in ("", "0") and not send_initial:
            try:
                since = int(rv_text)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv_text!r}") from None
        timeout = None
        if q.get("timeoutSeconds"):
            try:
                timeout = float(q["timeoutSeconds"])
            except ValueError:
                raise bad_request("invalid timeoutSeconds") from None
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        store = self.registry.store
        try:
            watcher = store.watch(target.res.key, target.namespace, predicate, since)
        except ApiError as err:
            await response.prepare(request)
            await response.write((dumps({"type": "ERROR", "object": err.status()}) + "\n").encode())
            await response.write_eof()
            return response
        initial_count = watcher.queue.qsize() if since is None else 0
        initial_rv = store.resource_version
        self.audit.watch_opened()
        try:
            await response.prepare(request)
            if send_initial:
                lines = []
                for _ in range(initial_count):
                    item = watcher.queue.get_nowait()
                    if item is not None:
                        lines.append(dumps({"type": item[0], "object": item[1]}))
                bookmark = {
                    "kind": target.res.kind,
                    "apiVersion": target.res.api_version,
                    "metadata": {
                        "resourceVersion": str(initial_rv),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                lines.append(dumps({"type": "BOOKMARK", "object": bookmark}))
                await response.write(("\n".join(lines) + "\n").encode())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout is not None else None
            bookmarks = _truthy(q.get("allowWatchBookmarks"))
            next_bookmark = self._next_bookmark(loop.time(), deadline) if bookmarks else None
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                wait = remaining
                if next_bookmark is not None:
                    until_bookmark = max(0.0, next_bookmark - loop.time())
                    wait = until_bookmark if wait is None else min(wait, until_bookmark)
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if next_bookmark is None or loop.time() < next_bookmark:
                        break
                    await self.faults.watches_flow.wait()
                    # the watch cache's revision, so a quiet watch can resume from it later
                    bookmark = {
                        "kind": target.res.kind,
                        "apiVersion": target.res.api_version,
                        "metadata": {"resourceVersion": str(store.resource_version)},
                    }
                    await response.write(
                        (dumps({"type": "BOOKMARK", "object": bookmark}) + "\n").encode()
                    )
                    next_bookmark = self._next_bookmark(loop.time(), deadline)
                    continue
                await self.faults.watches_flow.wait()  # a stuck stream holds what it has
                batch = [item]
                while not watcher.queue.empty():
                    batch.append(watcher.queue.get_nowait())
                done = None in batch
                lines = [
                    dumps({"type": t, "object": o}) for t, o in (b for b in batch if b is not None)
                ]
                if lines:
                    await response.write(("\n".join(lines) + "\n").encode())
                if done:
                    break
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        finally:
            self.audit.watch_closed()
            store.unwatch(watcher)
        return response

    def _next_bookmark(self, now: float, deadline: float | None) -> float | None:
        """When the next bookmark is due: every `bookmark_seconds`, and the last one 2 s
        before the watch's own end, as the API server's watch cache schedules them."""
        due = now + self.bookmark_seconds
        if deadline is not None:
            due = min(due, deadline - 2.0)
        return due if due > now else None

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            raise bad_request("the request body is empty")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == "application/vnd.kubernetes.protobuf":
            return protobuf.decode(raw)
        return parse_body(raw, yaml_ok=content_type == "application/yaml")

    async def _post(self, request: web.Request, target: Target) -> web.Response:
        dry_run = bool(request.query.get("dryRun"))
        if target.name is None:
            body = await self._body(request)
            obj = self.registry.create(
                target.res, target.namespace or "", body, manager_of(request), dry_run
            )
            return self._render(request, target, obj, 201)
        if target.res is PODS and target.subresource == "eviction":
            self.registry.delete(
                PODS, target.namespace or "", target.name, DeleteOptions(), dry_run
            )
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "code": 201,
                },
                201,
            )
        if target.res is PODS and target.subresource == "binding":
            body = await self._body(request)
            node = (body.get("target") or {}).get("name", "")
            self.registry.mutate(
                PODS,
                target.namespace or "",
                target.name,
                lambda p: p["spec"].__setitem__("nodeName", node),
                "kube-scheduler",
            )
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "code": 201,
                },
                201,
            )
        raise method_not_allowed()

    async def _put(self, request: web.Request, target: Target) -> web.Response:
        if target.name is None:
            raise method_not_allowed()
        body = await self._body(request)
        sub = "" if target.subresource == "finalize" else target.subresource
        if target.res is NAMESPACES and target.subresource == "finalize":
            obj = self.registry.get(NAMESPACES, "", target.name)
            return _json(obj)
        obj = self.registry.replace(
            target.res,
            target.namespace or "",
            target.name,
            body,
            manager_of(request),
            sub,
            bool(request.query.get("dryRun")),
        )
        return self._render(request, target, obj)

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        if target.name is None:
            raise method_not_allowed()
        raw = await request.read()
        if not raw:
            raise bad_request("the request body is empty")
        query = request.query
        content_type = request.headers.get("Content-Type", "")
        manager = query.get("fieldManager") or (
            None if content_type.startswith("application/apply-patch") else manager_of(request)
        )
        obj, created = self.registry.patch(
            target.res,
            target.namespace or "",
            target.name,
            content_type,
            raw,
            manager,
            _truthy(query.get("force")),
            target.subresource,
            bool(query.get("dryRun")),
        )
        return self._render(request, target, obj, 201 if created else 200)

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        query = request.query
        raw = await request.read()
        body: dict[str, Any] = {}
        if raw:
            parsed = parse_body(raw)
            body = parsed if isinstance(parsed, dict) else {}
        grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        preconditions = body.get("preconditions") or {}
        options = DeleteOptions(
            grace_period=int(grace) if grace not in (None, "") else None,
            propagation=query.get("propagationPolicy") or body.get("propagationPolicy"),
            precondition_uid=preconditions.get("uid"),
            precondition_rv=preconditions.get("resourceVersion"),
        )
        if body.get("orphanDependents") is True or query.get("orphanDependents") == "true":
            options.propagation = "Orphan"
        dry_run = bool(query.get("dryRun") or body.get("dryRun"))
        ns = target.namespace or ""
        if target.name is None:
            items, _ = self.registry.list(
                target.res, target.namespace, query.get("labelSelector"), query.get("fieldSelector")
            )
            for item in items:
                with contextlib.suppress(ApiError):
                    self.registry.delete(target.res, ns, item["metadata"]["name"], options, dry_run)
            return _json(_list_body(target.res, items, self.registry.store.resource_version))
        obj, gone = self.registry.delete(target.res, ns, target.name, options, dry_run)
        if gone and not self.registry.returns_deleted_object(target.res):
            meta = obj["metadata"]
            return _json(
                success_status(meta["name"], target.res.group, target.res.plural, meta.get("uid"))
            )
        return _json(obj)


def status_json(code: int, message: str, reason: str | None = None) -> web.Response:
    """A `Status` error response outside the registry (used by the proxy)."""
    return _json(status_body(code, message, reason), code)
