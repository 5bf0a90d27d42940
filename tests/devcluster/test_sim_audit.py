"""The simulator counts what it is asked as an API server's audit log would, and sends
watch bookmarks as the watch cache does."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gooseui.devcluster import SimClusterThread
from tests.devcluster.conftest import TIMEOUT


async def open_watch(api: client.ApiClient, namespace: str, **query: str) -> Any:
    """A raw watch of `namespace`'s ConfigMaps (the response, unread)."""
    return await api.call_api(
        f"/api/v1/namespaces/{namespace}/configmaps",
        "GET",
        query_params=[("watch", "true"), *query.items()],
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=TIMEOUT,
    )


@pytest.fixture
def fast_bookmarks(sim: SimClusterThread) -> Iterator[None]:
    """Bookmarks every 0.2 s for the test (the API server's 60 s afterwards)."""
    sim.set_bookmark_seconds(0.2)
    yield
    sim.set_bookmark_seconds(60.0)


def calls(audit: dict[str, Any]) -> dict[tuple[str, str, bool], int]:
    return {(c["verb"], c["resource"], c["cluster_wide"]): c["count"] for c in audit["calls"]}


async def test_requests_are_counted_by_verb_resource_and_scope(
    sim: SimClusterThread, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str
) -> None:
    sim.audit(reset=True)
    await apps.list_deployment_for_all_namespaces(_request_timeout=TIMEOUT)
    await core.read_namespace(namespace, _request_timeout=TIMEOUT)
    body = {"metadata": {"name": "audited"}, "data": {"a": "1"}}
    await core.create_namespaced_config_map(namespace, body, _request_timeout=TIMEOUT)
    await core.patch_namespaced_config_map(
        "audited", namespace, {"data": {"a": "2"}}, _request_timeout=TIMEOUT
    )
    await core.list_namespaced_config_map(namespace, _request_timeout=TIMEOUT)
    await core.delete_namespaced_config_map("audited", namespace, _request_timeout=TIMEOUT)
    audit = sim.audit()
    assert calls(audit) == {
        ("list", "deployments", True): 1,
        ("get", "namespaces", True): 1,
        ("create", "configmaps", False): 1,
        ("patch", "configmaps", False): 1,
        ("list", "configmaps", False): 1,
        ("delete", "configmaps", False): 1,
    }
    assert audit["total"] == 6


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_is_counted_too(sim: SimClusterThread, kubectl_env: dict[str, str]) -> None:
    sim.audit(reset=True)
    result = subprocess.run(
        ["kubectl", "get", "deployments", "-A", "-o", "json"],
        env=kubectl_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout)["kind"] == "List"
    # discovery is not a resource request; the list is, cluster-wide
    assert calls(sim.audit())[("list", "deployments", True)] == 1


async def test_watches_are_a_gauge_and_get_bookmarks(
    sim: SimClusterThread, api: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    sim.set_bookmark_seconds(0.3)
    try:
        sim.audit(reset=True)
        listing = await core.list_namespaced_config_map(namespace, _request_timeout=TIMEOUT)
        version = int(listing.metadata.resource_version)
        started = time.monotonic()
        response = await open_watch(
            api,
            namespace,
            allowWatchBookmarks="true",
            resourceVersion=str(version),
            timeoutSeconds="3",
        )
        await asyncio.sleep(0.5)
        assert sim.audit()["watches_open"] == 1
        lines = (await response.read()).decode().splitlines()
        response.release()
        elapsed = time.monotonic() - started
        events = [json.loads(line) for line in lines]
        assert events and all(e["type"] == "BOOKMARK" for e in events)
        # a bookmark carries only kind, apiVersion and a revision no older than the watch's
        assert all(int(e["object"]["metadata"]["resourceVersion"]) >= version for e in events)
        assert events[0]["object"]["kind"] == "ConfigMap"
        assert 2 <= len(events) <= 5, events
        assert 2.5 <= elapsed < 5, elapsed
        audit = sim.audit()
        assert audit["watches_open"] == 0 and audit["watches_peak"] == 1
        assert calls(audit)[("watch", "configmaps", False)] == 1
    finally:
        sim.set_bookmark_seconds(60.0)


async def test_no_bookmarks_unless_asked(
    api: client.ApiClient, namespace: str, fast_bookmarks: None
) -> None:
    response = await open_watch(api, namespace, timeoutSeconds="1")
    body = await response.read()
    response.release()
    assert body.strip() == b""


async def test_frozen_watches_send_nothing_until_cleared(
    sim: SimClusterThread,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    fast_bookmarks: None,
) -> None:
    response = await open_watch(api, namespace, allowWatchBookmarks="true", timeoutSeconds="30")
    first = json.loads(await asyncio.wait_for(response.content.readline(), 5))
    assert first["type"] == "BOOKMARK"  # flowing
    sim.freeze_watches()
    await asyncio.sleep(0.3)  # a bookmark written before the freeze may still be read
    while True:
        try:
            json.loads(await asyncio.wait_for(response.content.readline(), 0.1))
        except TimeoutError:
            break
    body = {"metadata": {"name": "during-freeze"}}
    await core.create_namespaced_config_map(namespace, body, _request_timeout=TIMEOUT)
    with pytest.raises(TimeoutError):  # no event, no bookmark: open and silent
        await asyncio.wait_for(response.content.readline(), 1.0)
    sim.clear_faults()
    seen = []
    while not any(e["type"] == "ADDED" for e in seen):
        seen.append(json.loads(await asyncio.wait_for(response.content.readline(), 5)))
    added = next(e for e in seen if e["type"] == "ADDED")
    assert added["object"]["metadata"]["name"] == "during-freeze"
    response.release()
