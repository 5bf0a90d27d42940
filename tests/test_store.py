"""The MongoDB repository, against a real server over TCP."""

from __future__ import annotations

import asyncio

import pytest

from gooseui.errors import Unavailable
from gooseui.models import Status
from gooseui.store import DuplicateName, ProjectStore, create_client
from tests.conftest import new_doc


async def test_indexes_are_created(store: ProjectStore) -> None:
    await store.ensure_indexes()
    info = await store._collection.index_information()
    assert info["user_project"]["unique"] and info["user_name"]["unique"]
    assert info["user_project"]["key"] == [("user_id", 1), ("project_id", 1)]
    assert info["user_name"]["key"] == [("user_id", 1), ("name_key", 1)]
    assert info["user_created"]["key"] == [("user_id", 1), ("created_at", -1)]


async def test_insert_get_list_newest_first(store: ProjectStore) -> None:
    first = await store.insert(new_doc(name="First"))
    await asyncio.sleep(0.005)
    second = await store.insert(new_doc(name="Second"))
    await store.insert(new_doc(user_id="bob", name="First"))  # names are unique per user only
    listed = await store.list("alice")
    assert [d["name"] for d in listed] == ["Second", "First"]
    got = await store.get("alice", first["project_id"])
    assert got is not None and got["created_at"] == first["created_at"]
    assert got["created_at"].tzinfo is not None
    assert second["project_id"] != first["project_id"]
    assert await store.count("alice") == 2


async def test_names_unique_ignoring_case(store: ProjectStore) -> None:
    await store.insert(new_doc(name="Straße"))
    with pytest.raises(DuplicateName):
        await store.insert(new_doc(name="STRASSE"))
    other = await store.insert(new_doc(name="Other"))
    with pytest.raises(DuplicateName):
        await store.rename("alice", other["project_id"], "strasse")
    renamed = await store.rename("alice", other["project_id"], "OTHER")
    assert renamed is not None and renamed["name"] == "OTHER"


async def test_compare_and_set_only_from_expected_status(store: ProjectStore) -> None:
    doc = await store.insert(new_doc())
    pid = doc["project_id"]
    moved = await store.compare_and_set(
        "alice", pid, [Status.INACTIVE, Status.FAILED], {"status": "activating"}
    )
    assert moved is not None and moved["status"] == "activating"
    assert moved["updated_at"] >= doc["updated_at"]
    assert (
        await store.compare_and_set("alice", pid, [Status.INACTIVE], {"status": "activating"})
        is None
    )
    assert await store.delete("alice", pid, [Status.INACTIVE]) is False
    assert await store.delete("alice", pid, [Status.ACTIVATING]) is True
    assert await store.get("alice", pid) is None


async def test_concurrent_transitions_one_wins(store: ProjectStore) -> None:
    doc = await store.insert(new_doc())
    results = await asyncio.gather(
        *[
            store.compare_and_set(
                "alice", doc["project_id"], [Status.INACTIVE], {"status": "activating"}
            )
            for _ in range(10)
        ]
    )
    assert sum(r is not None for r in results) == 1


async def test_unreachable_server_is_unavailable() -> None:
    mongo = create_client("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200")
    try:
        store = ProjectStore(mongo, "x", "projects")
        with pytest.raises(Unavailable) as caught:
            await store.list("alice")
        assert caught.value.code == "DatabaseUnavailable"
        assert "MongoDB is not answering" in caught.value.detail
    finally:
        await mongo.close()


async def test_leases_are_renewed_in_one_write_and_lost_ones_named(store: ProjectStore) -> None:
    docs = [await store.insert(new_doc(name=f"L{i}")) for i in range(3)]
    keys = [("alice", d["project_id"]) for d in docs]
    for _, pid in keys:
        taken = await store.compare_and_set(
            "alice", pid, [Status.INACTIVE], {"status": "activating"}, holder="me", lease="take"
        )
        assert taken is not None
    before = {k: (await store.get(*k))["lease_expires"] for k in keys}
    # another replica takes the third over (its lease had lapsed)
    await store._collection.update_one(
        {"project_id": keys[2][1]}, {"$set": {"lease_holder": "other"}}
    )
    await asyncio.sleep(0.01)
    assert await store.renew_leases("me", keys) == {keys[2]}
    for key in keys[:2]:
        assert (await store.get(*key))["lease_expires"] > before[key]
    assert (await store.get(*keys[2]))["lease_holder"] == "other"
    assert await store.renew_leases("me", []) == set()


async def test_a_lease_is_taken_when_free_lapsed_or_own_never_from_a_live_holder(
    store: ProjectStore,
) -> None:
    from datetime import timedelta

    from gooseui.store import now

    pid = (await store.insert(new_doc(name="Leased")))["project_id"]

    async def take(holder: str) -> bool:
        doc = await store.compare_and_set(
            "alice", pid, [Status.INACTIVE, Status.ACTIVATING], {"status": "activating"},
            holder=holder, lease="take",
        )  # fmt: skip
        return doc is not None and doc["lease_holder"] == holder

    assert await take("a")  # never taken
    assert await take("a")  # its own
    assert not await take("b")  # a live lease of another
    await store._collection.update_one(
        {"project_id": pid}, {"$set": {"lease_expires": now() - timedelta(seconds=1)}}
    )
    assert await take("b")  # lapsed
    released = await store.compare_and_set(
        "alice", pid, [Status.ACTIVATING], {"status": "active"}, holder="a", lease="release"
    )
    assert released is None  # only the holder releases
    released = await store.compare_and_set(
        "alice", pid, [Status.ACTIVATING], {"status": "active"}, holder="b", lease="release"
    )
    assert released is not None and released["lease_holder"] is None
