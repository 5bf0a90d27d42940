"""Events between replicas through MongoDB: by change stream, and by polling where the
server has none (a standalone mongod); a replica alone writes none."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gooseui.events import EventBus, ProjectEvent
from gooseui.fanout import EventFanout
from gooseui.store import create_client


@pytest.mark.parametrize("change_streams", [True, False], ids=["change-stream", "polling"])
async def test_an_event_published_on_one_replica_reaches_the_other(
    mongo_uri: str, change_streams: bool
) -> None:
    mongo = create_client(mongo_uri)
    database = mongo[f"t_{uuid.uuid4().hex[:12]}"]
    buses = [EventBus(), EventBus()]
    fanouts = [
        EventFanout(
            database["project_events"],
            bus,
            f"replica-{i}",
            database["project_replicas"],
            change_streams=change_streams,
        )
        for i, bus in enumerate(buses)
    ]
    for fanout in fanouts:
        await fanout.start()
    try:
        for _ in range(50):  # both are following, and know the other by its heartbeat
            if all(f.peers for f in fanouts):
                break
            await asyncio.sleep(0.1)
        assert [f.peers for f in fanouts] == [["replica-1"], ["replica-0"]]
        async with buses[1].subscribe("alice") as on_b, buses[0].subscribe("alice") as on_a:
            for n in range(3):
                buses[0].publish(ProjectEvent("alice", "p1", "activating", f"step{n}", "m"))
            received = [await asyncio.wait_for(on_b.get(), 5) for _ in range(3)]
            assert [e.step for e in received] == ["step0", "step1", "step2"]
            assert received[0].at.tzinfo is not None
            # a's own events reach its subscribers once: published, never echoed back
            assert [(await on_a.get()).step for _ in range(3)] == ["step0", "step1", "step2"]
            await asyncio.sleep(0.6)
            assert on_a.empty() and on_b.empty()
        assert fanouts[1].mode == ("change stream" if change_streams else "polling")
    finally:
        for fanout in fanouts:
            await fanout.stop()
        await mongo.close()


async def test_a_replica_alone_writes_no_events(mongo_uri: str) -> None:
    mongo = create_client(mongo_uri)
    database = mongo[f"t_{uuid.uuid4().hex[:12]}"]
    bus = EventBus()
    fanout = EventFanout(database["project_events"], bus, "alone", database["project_replicas"])
    await fanout.start()
    try:
        bus.publish(ProjectEvent("alice", "p1", "activating", "start", "m"))
        await asyncio.sleep(0.3)
        assert fanout.peers == []
        assert await database["project_events"].count_documents({}) == 0
    finally:
        await fanout.stop()
        assert await database["project_replicas"].count_documents({}) == 0  # signed off
        await mongo.close()
