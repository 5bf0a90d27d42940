"""Pure functions of the simulator (selectors, patches, field ownership) on their own."""

from __future__ import annotations

import pytest

from gooseui.devcluster.apply import server_side_apply
from gooseui.devcluster.errors import ApiError
from gooseui.devcluster.merge import json_patch, merge_patch, strategic_merge
from gooseui.devcluster.selectors import labels_match, parse_label_selector


def test_label_selector_parsing() -> None:
    reqs = parse_label_selector("a=1,b!=2,c in (x, y),d notin (z),e,!f")
    assert labels_match(reqs, {"a": "1", "c": "x", "e": ""})
    assert not labels_match(reqs, {"a": "1", "c": "x", "e": "", "f": "1"})
    assert not labels_match(reqs, {"a": "1", "b": "2", "c": "x", "e": ""})
    with pytest.raises(ApiError):
        parse_label_selector("a in (")


def test_strategic_merge_directives() -> None:
    live = {
        "spec": {
            "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}],
            "finalizers": ["x"],
        }
    }
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": "3"}, {"name": "b", "$patch": "delete"}],
        }
    }
    assert strategic_merge(live, patch) == {
        "spec": {"containers": [{"name": "a", "image": "3"}], "finalizers": ["x"]}
    }
    assert strategic_merge({"a": {"b": 1, "c": 2}}, {"a": {"$retainKeys": ["b"], "b": 5}}) == {
        "a": {"b": 5}
    }
    assert strategic_merge({"a": {"b": 1}}, {"a": {"$patch": "replace", "c": 2}}) == {"a": {"c": 2}}


def test_merge_and_json_patch() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None}, "l": [2]}) == {
        "a": {"c": 2},
        "l": [2],
    }
    doc = json_patch(
        {"a": [1, 2]}, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/a/0"}]
    )
    assert doc == {"a": [2, 3]}
    with pytest.raises(ApiError):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])


def _apply(live: dict | None, body: dict, manager: str, force: bool = False) -> dict:
    return server_side_apply(
        live, body, manager, force, "apps/v1", "2026-01-01T00:00:00Z", "Deployment", "apps", "d"
    )


def test_apply_removes_fields_a_manager_stopped_applying() -> None:
    first = _apply(
        None, {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}, "m"
    )
    second = _apply(first, {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2}}, "m")
    assert second["metadata"]["labels"] == {"a": "1"}
    assert second["spec"]["replicas"] == 2


def test_apply_conflicts_and_shared_ownership() -> None:
    base = _apply(None, {"spec": {"replicas": 1, "paused": False}}, "one")
    same_value = _apply(base, {"spec": {"replicas": 1}}, "two")  # equal values: shared, no conflict
    with pytest.raises(ApiError) as info:
        _apply(same_value, {"spec": {"replicas": 3}}, "two")
    assert info.value.code == 409
    assert (
        info.value.message
        == 'Apply failed with 1 conflict: conflict with "one" using apps/v1: .spec.replicas'
    )
    forced = _apply(same_value, {"spec": {"replicas": 3}}, "two", force=True)
    assert forced["spec"]["replicas"] == 3
    owners = {e["manager"]: e["fieldsV1"] for e in forced["metadata"]["managedFields"]}
    assert "f:replicas" not in owners["one"].get("f:spec", {})
