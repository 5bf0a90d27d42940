"""The shared informers against the simulated API server, counted by its audit."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gooseui.cluster import manifests
from gooseui.cluster.client import ClusterUnavailable, KubeClient
from gooseui.cluster.informer import Informers
from gooseui.devcluster import SimClusterThread

MANAGED = {manifests.LABEL_MANAGED_BY: manifests.MANAGER}


def calls(sim: SimClusterThread) -> dict[tuple[str, str, bool], int]:
    audit = sim.audit()
    return {(c["verb"], c["resource"], c["cluster_wide"]): c["count"] for c in audit["calls"]}


def namespace_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def config(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A ConfigMap stands in for any managed kind: the informer does not care which."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or dict(MANAGED)},
        "data": {"k": "v"},
    }


@pytest.fixture
async def kube(sim: SimClusterThread) -> AsyncIterator[KubeClient]:
    client = KubeClient(str(sim.kubeconfig_path))
    await client.connect()
    yield client
    await client.close()


@pytest.fixture
async def namespaces(kube: KubeClient) -> AsyncIterator[list[str]]:
    names = [f"inf-{secrets.token_hex(3)}-{i}" for i in range(20)]
    await asyncio.gather(*(kube.apply(namespace_object(n)) for n in names))
    yield names
    await asyncio.gather(*(kube.delete(f"/api/v1/namespaces/{n}") for n in names))


async def test_one_watch_however_many_wait(
    sim: SimClusterThread, kube: KubeClient, namespaces: list[str]
) -> None:
    sim.audit(reset=True)
    informers = Informers(kube, ["ConfigMap"])
    informers.start()
    configs = informers["ConfigMap"]
    try:
        waits = [
            asyncio.create_task(
                informers.wait(ns, lambda ns=ns: configs.get(ns, "c"), 10, 5, ["ConfigMap"])
            )
            for ns in namespaces
        ]
        await asyncio.sleep(0.3)
        assert not any(w.done() for w in waits)
        # unlabelled objects are not the console's: never in the cache
        await kube.apply(config(namespaces[0], "stranger", {"app": "x"}))
        await asyncio.gather(*(kube.apply(config(ns, "c")) for ns in namespaces))
        found = await asyncio.wait_for(asyncio.gather(*waits), 10)
        assert [obj["metadata"]["namespace"] for obj in found] == namespaces
        assert configs.get(namespaces[0], "stranger") is None
        seen = calls(sim)
        # twenty waiters, one list and one watch between them, cluster-wide
        assert seen[("list", "configmaps", True)] == 1
        assert seen[("watch", "configmaps", True)] == 1
        assert ("list", "configmaps", False) not in seen
        assert informers.watches == 1
    finally:
        await informers.close()


async def test_a_compacted_history_lists_again(
    sim: SimClusterThread, kube: KubeClient, namespaces: list[str]
) -> None:
    ns = namespaces[0]
    await kube.apply(config(ns, "kept"))
    await kube.apply(config(ns, "removed"))
    informers = Informers(kube, ["ConfigMap"])
    informers.start()
    configs = informers["ConfigMap"]
    try:
        assert await informers.wait(ns, lambda: configs.get(ns, "removed"), 5, 5, ["ConfigMap"])
        # the watch breaks and cannot come back (503) while things change and etcd compacts
        sim.fail_requests("/api/v1/configmaps", 503, count=None)
        sim.call(lambda: sim.cluster.store.close_watchers())  # type: ignore[union-attr]
        await kube.delete(f"/api/v1/namespaces/{ns}/configmaps/removed")
        await kube.apply(config(ns, "added"))
        sim.compact_history()
        for _ in range(100):
            if configs.failing_for() > 0:
                break
            await asyncio.sleep(0.05)
        assert configs.failing_for() > 0 and configs.error and "503" in configs.error
        sim.clear_faults()
        # resuming from its old revision gets 410 Gone: it lists again, and what the new
        # list lacks is gone from the cache
        assert await informers.wait(ns, lambda: configs.get(ns, "added"), 10, 20, ["ConfigMap"])
        assert configs.get(ns, "removed") is None
        assert configs.get(ns, "kept") is not None
        assert configs.failing_for() == 0
    finally:
        await informers.close()


async def test_a_forbidden_cluster_wide_list_falls_back_to_namespaces(
    sim: SimClusterThread, kube: KubeClient, namespaces: list[str]
) -> None:
    """RBAC bound per namespace (RoleBindings): one list+watch per namespace waited on."""
    sim.fail_requests("/api/v1/configmaps", 403, count=None)
    sim.audit(reset=True)
    informers = Informers(kube, ["ConfigMap"])
    informers.start()
    configs = informers["ConfigMap"]
    try:
        first, second = namespaces[:2]
        await kube.apply(config(first, "c"))
        await kube.apply(config(second, "c"))
        for ns in (first, first, second):
            assert await informers.wait(ns, lambda ns=ns: configs.get(ns, "c"), 5, 5, ["ConfigMap"])
        assert configs.scoped
        seen = calls(sim)
        assert seen[("list", "configmaps", True)] == 1  # tried once, refused
        assert seen[("list", "configmaps", False)] == 2  # one per namespace, not per wait
        assert informers.watches == 2
        assert configs.failing_for() == 0
    finally:
        await informers.close()


async def test_a_blind_cache_fails_its_waiters(
    sim: SimClusterThread, kube: KubeClient, namespaces: list[str]
) -> None:
    informers = Informers(kube, ["ConfigMap"])
    informers.start()
    try:
        ns = namespaces[0]
        assert await informers.wait(ns, lambda: True, 5, 5, ["ConfigMap"])
        sim.fail_requests("/api/v1/configmaps", 503, count=None)
        sim.call(lambda: sim.cluster.store.close_watchers())  # type: ignore[union-attr]
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable, match="lost its watch of the cluster's ConfigMaps"):
            await informers.wait(ns, lambda: None, 30, 1.0, ["ConfigMap"])
        assert time.monotonic() - started < 5
    finally:
        await informers.close()


async def test_a_watch_stuck_mid_stream_is_noticed(
    sim: SimClusterThread, kube: KubeClient, namespaces: list[str]
) -> None:
    """The connection stays open and nothing comes, not even the bookmark the API server
    sends a minute: the cache calls itself blind instead of trusting a silent stream."""
    sim.set_bookmark_seconds(0.2)
    informers = Informers(kube, ["ConfigMap"], idle_seconds=1.0)
    informers.start()
    configs = informers["ConfigMap"]
    ns = namespaces[0]
    try:
        assert await informers.wait(ns, lambda: True, 5, 5, ["ConfigMap"])
        await asyncio.sleep(1.5)  # bookmarks keep a quiet watch alive
        assert configs.failing_for() == 0
        sim.freeze_watches()
        await kube.apply(config(ns, "unseen"))
        with pytest.raises(ClusterUnavailable, match="went silent"):
            await informers.wait(ns, lambda: configs.get(ns, "unseen"), 10, 1.5, ["ConfigMap"])
        sim.clear_faults()
        assert await informers.wait(ns, lambda: configs.get(ns, "unseen"), 10, 30, ["ConfigMap"])
        assert configs.failing_for() == 0
    finally:
        sim.set_bookmark_seconds(60.0)
        await informers.close()


async def test_a_change_before_every_kind_covers_does_not_stall_the_loop(
    sim: SimClusterThread, kube: KubeClient, namespaces: list[str]
) -> None:
    """One kind has listed, the other not yet (its list fails twice), and a change arrives
    meanwhile: the waiter must sleep, not spin, so the other kind's list can run."""
    ns = namespaces[0]
    sim.fail_requests("/api/v1/secrets", 503, count=2)
    informers = Informers(kube, ["ConfigMap", "Secret"])
    configs = informers["ConfigMap"]
    worst = 0.0

    async def probe() -> None:
        nonlocal worst
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.02)
            worst = max(worst, loop.time() - before - 0.02)

    watchdog = asyncio.create_task(probe())
    informers.start()
    try:
        waiting = asyncio.create_task(
            informers.wait(ns, lambda: configs.get(ns, "c"), 15, 15, ["ConfigMap", "Secret"])
        )
        await kube.apply(config(ns, "c"))
        assert await asyncio.wait_for(waiting, 15)
        assert worst < 0.5, worst
    finally:
        watchdog.cancel()
        await informers.close()
