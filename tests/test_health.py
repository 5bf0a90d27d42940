"""The process's one health probe: shared by every page, and no false alarm from a pooled
MongoDB connection the server closed while it was idle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from gooseui import runtime as runtime_module
from gooseui.config import load_settings
from gooseui.embedded import EmbeddedMongo
from gooseui.errors import Unavailable
from gooseui.runtime import Runtime
from gooseui.store import ProjectStore

MONITOR_COMMANDS = {"hello", "ismaster", "isMaster", "getMore", "aggregate"}


async def until(check: Any, seconds: float = 10.0) -> Any:
    for _ in range(int(seconds * 20)):
        if value := check():
            return value
        await asyncio.sleep(0.05)
    return check()


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every MongoDB ping of the console (the real one runs; its start is recorded)."""
    seen: list[float] = []
    ping = ProjectStore.ping

    async def counted(self: ProjectStore) -> None:
        seen.append(asyncio.get_running_loop().time())
        await ping(self)

    monkeypatch.setattr(ProjectStore, "ping", counted)
    return seen


async def test_one_probe_serves_every_page(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, pings: list[float]
) -> None:
    """25 pages asking 20 times a second for 2 s: 1,000 answers, one probe per interval."""
    monkeypatch.setattr(runtime_module, "HEALTH_SECONDS", 0.25)
    monkeypatch.setattr(runtime_module, "HEALTH_MIN_GAP", 0.25)
    rt = Runtime(load_settings())
    ready, checks = rt.health()  # before start: nothing probed, nothing waited for
    assert not ready and not pings
    assert {c["state"] for c in checks.values()} == {"checking"}
    assert all(c["ok"] is None for c in checks.values())
    told: list[bool] = []
    rt.on_health_change(lambda ready, _checks: told.append(ready))
    await rt.start()
    try:
        assert await until(lambda: rt.health()[1]["mongodb"]["state"] != "checking")
        assert told == [True]  # the first result; nothing changed after it
        loop = asyncio.get_running_loop()
        started, before = loop.time(), len(pings)
        answers = 0

        async def page() -> None:
            nonlocal answers
            for _ in range(40):
                ready, checks = rt.health()
                assert ready and checks["mongodb"]["ok"] and checks["cluster"]["ok"], checks
                assert checks["mongodb"]["state"] == "ok" and checks["mongodb"]["checked_at"]
                answers += 1
                await asyncio.sleep(0.05)

        await asyncio.gather(*(page() for _ in range(25)))
        elapsed = loop.time() - started
        probes = len(pings) - before
        assert answers == 1000
        assert 2 <= probes <= elapsed / 0.25 + 2, (probes, elapsed)
        gaps = [b - a for a, b in zip(pings[before:], pings[before + 1 :], strict=False)]
        assert all(gap >= 0.2 for gap in gaps), gaps  # one probe at a time, spaced
        assert told == [True]
        # /readyz is the kubelet's: it probes live, beside the shared probe
        live = len(pings)
        ready, checks = await rt.readiness()
        assert ready and len(pings) >= live + 1
    finally:
        await rt.stop()
    stopped = len(pings)
    await asyncio.sleep(0.6)
    assert len(pings) == stopped  # the probe ended with the runtime


@pytest.fixture
async def own_database() -> AsyncIterator[EmbeddedMongo]:
    """A SecantusDB of the test's own, whose connections are killed."""
    server = EmbeddedMongo(":memory:")
    await server.start()
    yield server
    await server.stop()


async def kill_idle_connections(admin: AsyncMongoClient[Any]) -> int:
    """Close, server side, the console's pooled connections (not its monitors or its change
    stream), as a server does with connections idle past its timeout: SecantusDB after
    5 min, a load balancer or a managed MongoDB after theirs."""
    killed = 0
    for op in (await admin.admin.command("currentOp"))["inprog"]:
        app = ((op.get("clientMetadata") or {}).get("application") or {}).get("name")
        if app == "gooseui" and op.get("op") not in MONITOR_COMMANDS:
            await admin.admin.command("killOp", op=op["opid"])
            killed += 1
    await asyncio.sleep(0.1)  # the server's connection threads see the shutdown
    return killed


async def test_a_connection_the_server_closed_is_no_false_alarm(
    console_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    own_database: EmbeddedMongo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before the fix, a page opened after ~10 min idle showed the database red with
    "connection is already closed" while the project list loaded fine: PyMongo hands out a
    pooled connection the server closed (its async pool does not read an idle socket, so
    it never sees the close), and `ping` is a command it never retries, unlike reads."""
    monkeypatch.setenv("MONGO_URI", own_database.uri)
    monkeypatch.setattr(runtime_module, "HEALTH_SECONDS", 3600.0)  # ticks only when woken
    monkeypatch.setattr(runtime_module, "HEALTH_MIN_GAP", 0.0)
    caplog.set_level(logging.INFO, logger="gooseui.runtime")
    rt = Runtime(load_settings())
    await rt.start()
    admin: AsyncMongoClient[Any] = AsyncMongoClient(own_database.uri, appname="killer")
    try:
        assert await until(lambda: rt.health()[1]["mongodb"]["state"] != "checking")
        assert rt.health()[1]["mongodb"]["ok"] is True

        # the cause: the driver's own ping fails on such a connection
        failures = []
        for _ in range(5):
            assert await kill_idle_connections(admin) >= 1
            try:
                await rt.service.store.ping()
            except Unavailable as exc:
                failures.append(exc.detail)
                break
        assert failures and "closed" in failures[0], failures

        # the probe tries a fresh connection before it reports red
        for _ in range(5):
            await rt.service.store.ping()  # a pooled connection to be closed
            at = rt.health()[1]["mongodb"]["checked_at"]
            assert await kill_idle_connections(admin) >= 1
            rt.request_health_check()
            assert await until(lambda at=at: rt.health()[1]["mongodb"]["checked_at"] != at)
            checks = rt.health()[1]
            assert checks["mongodb"]["ok"] is True, checks["mongodb"]
            assert "error" not in checks["mongodb"]
        retried = [r for r in caplog.records if r.getMessage() == "mongo.ping_retried"]
        assert retried, "no probe met a closed connection"
        assert "closed" in retried[0].fields["error"]  # type: ignore[attr-defined]

    finally:
        await admin.close()
        await rt.stop()
