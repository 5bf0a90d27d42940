"""Events between replicas through MongoDB: by change stream, and by polling where the
server has none (a standalone mongod)."""

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
    collection = mongo[f"t_{uuid.uuid4().hex[:12]}"]["project_events"]
    buses = [EventBus(), EventBus()]
    fanouts = [
        EventFanout(collection, bus, f"replica-{i}", change_streams=change_streams)
        for i, bus in enumerate(buses)
    ]
    for fanout in fanouts:
        await fanout.start()
    try:
        await asyncio.sleep(0.3)  # both are following
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
