"""The simulated Goose agent, reached through the API server's service proxy (httpx-sse)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from gooseui.devcluster import SimClusterThread

NAME = "proj-chat-api"


def base(namespace: str, name: str = NAME) -> str:
    return f"/api/v1/namespaces/{namespace}/services/{name}:3001/proxy"


async def new_session(http: httpx.AsyncClient, namespace: str) -> str:
    response = await http.post(base(namespace) + "/api/v1/sessions")
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


async def chat(
    http: httpx.AsyncClient, namespace: str, sid: str, message: str
) -> list[tuple[float, dict[str, Any]]]:
    """Send a message and collect (arrival time, payload) for every event."""
    events = []
    url = base(namespace) + f"/api/v1/sessions/{sid}/messages"
    async with aconnect_sse(http, "POST", url, json={"message": message}) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for sse in source.aiter_sse():
            assert sse.event == "message" and sse.id == ""  # no event:/id: fields on the wire
            events.append((time.monotonic(), json.loads(sse.data)))
    return events


def text_of(events: list[tuple[float, dict[str, Any]]]) -> str:
    return "".join(p["content"]["content"] for _, p in events if p["type"] == "message")


async def test_health_sessions_and_incremental_stream(
    http: httpx.AsyncClient, namespace: str, project: Any
) -> None:
    await project(NAME)
    health = await http.get(base(namespace) + "/api/v1/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["project_id"] == NAME

    sid = await new_session(http, namespace)
    events = await chat(http, namespace, sid, "hello there")
    kinds = [p["type"] for _, p in events]
    assert kinds[-1] == "complete" and events[-1][1]["content"]["session_id"] == sid
    deltas = [(t, p) for t, p in events if p["type"] == "message"]
    assert len(deltas) >= 10
    assert all(
        p["content"]["role"] == "assistant" and p["content"]["session_id"] == sid for _, p in deltas
    )
    assert "hello there" in text_of(events)
    # arrival times spread over the reply (deltas are 20 ms apart): streamed, not buffered
    arrivals = [t for t, _ in deltas]
    assert arrivals[-1] - arrivals[0] > 0.1
    assert len({round(t, 3) for t in arrivals}) > len(arrivals) // 2

    info = await http.get(base(namespace) + f"/api/v1/sessions/{sid}")
    assert info.json()["message_count"] == 2
    history = (await http.get(base(namespace) + f"/api/v1/sessions/{sid}/messages")).json()
    assert [m["role"] for m in history["messages"]] == ["User", "Assistant"]
    assert [m["message_index"] for m in history["messages"]] == [0, 1]
    assert history["total_count"] == 2
    assert history["messages"][1]["content"] == text_of(events)


async def test_tool_call_events(http: httpx.AsyncClient, namespace: str, project: Any) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    events = await chat(http, namespace, sid, "please use a tool")
    kinds = [p["type"] for _, p in events]
    request = kinds.index("tool_request")
    assert kinds[request + 1] == "tool_response"
    assert events[request][1]["content"]["id"] == events[request + 1][1]["content"]["id"]
    assert events[request + 1][1]["content"]["is_error"] is False
    assert kinds[-1] == "complete"


async def test_error_mid_stream_then_complete(
    http: httpx.AsyncClient, namespace: str, project: Any
) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    kinds = [p["type"] for _, p in await chat(http, namespace, sid, "simulate-error please")]
    assert kinds[-2:] == ["error", "complete"]


async def test_split_events_are_reassembled(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    plain = await chat(http, namespace, sid, "same words")
    sim.agent_split_events(chunk_size=16, pause=0.0005, namespace=namespace)
    reads = 0
    url = base(namespace) + f"/api/v1/sessions/{sid}/messages"
    async with http.stream("POST", url, json={"message": "count my reads"}) as response:
        async for _chunk in response.aiter_raw():
            reads += 1
    split = await chat(http, namespace, sid, "same words")
    assert reads > 50  # the agent really wrote many small pieces
    assert [p["type"] for _, p in split] == [p["type"] for _, p in plain]
    assert text_of(split) == text_of(plain)


async def test_keepalive_comments_and_wire_format(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    sim.set_agent(delta_delay=0.05, keepalive=0.02, reply_deltas=12)
    lines = []
    async with http.stream(
        "POST", base(namespace) + f"/api/v1/sessions/{sid}/messages", json={"message": "hi"}
    ) as response:
        async for line in response.aiter_lines():
            lines.append(line)
    comments = [line for line in lines if line.startswith(":")]
    data = [line for line in lines if line.startswith("data: ")]
    assert comments and all(c == ": ping" for c in comments)
    assert len(data) == 13  # 12 deltas + complete
    assert all(line.startswith(("data: ", ":")) or line == "" for line in lines)
    for line in data:
        json.loads(line[len("data: ") :])


async def test_client_disconnect_is_seen_by_the_agent(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    sim.set_agent(delta_delay=0.05, reply_deltas=200)
    start = len(sim.agent_records())
    url = base(namespace) + f"/api/v1/sessions/{sid}/messages"
    async with aconnect_sse(http, "POST", url, json={"message": "a long one"}) as source:
        received = 0
        async for _ in source.aiter_sse():
            received += 1
            if received == 3:
                break
    closed_at = time.monotonic()
    record = await sim.arun(
        sim.cluster.wait_agent_record("client_disconnected", start=start, within=3)
    )
    assert record is not None and record.session_id == sid
    assert record.at - closed_at < 1.0
    assert record.events_sent < 200
    # the session is free again, and the partial reply was not saved
    history = (await http.get(base(namespace) + f"/api/v1/sessions/{sid}/messages")).json()
    assert [m["role"] for m in history["messages"]] == ["User"]


async def test_one_reply_per_session(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    sim.set_agent(delta_delay=0.05, reply_deltas=40)
    url = base(namespace) + f"/api/v1/sessions/{sid}/messages"
    async with aconnect_sse(http, "POST", url, json={"message": "first"}) as source:
        async for _ in source.aiter_sse():
            second = await http.post(url, json={"message": "second"})
            assert second.status_code == 409
            assert "already running" in second.json()["error"]
            break


async def test_unknown_session_is_404(
    http: httpx.AsyncClient, namespace: str, project: Any
) -> None:
    await project(NAME)
    for method, path in (
        ("GET", "/api/v1/sessions/nope"),
        ("DELETE", "/api/v1/sessions/nope"),
        ("GET", "/api/v1/sessions/nope/messages"),
        ("POST", "/api/v1/sessions/nope/messages"),
    ):
        response = await http.request(
            method, base(namespace) + path, json={"message": "x"} if method == "POST" else None
        )
        assert response.status_code == 404, (method, path)
    sid = await new_session(http, namespace)
    assert (await http.delete(base(namespace) + f"/api/v1/sessions/{sid}")).status_code == 204
    assert (await http.get(base(namespace) + f"/api/v1/sessions/{sid}")).status_code == 404


async def test_sessions_survive_a_pod_restart(
    http: httpx.AsyncClient, kube: Any, manifests: Any, namespace: str, project: Any
) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    await chat(http, namespace, sid, "remember me")
    first_pod = (await http.get(base(namespace) + "/api/v1/health")).json()["pod"]
    await kube.apply_deployment(namespace, manifests.deployment(NAME, replicas=0))
    await kube.wait_pods(namespace, f"app.kubernetes.io/instance={NAME}", lambda pods: not pods)
    unavailable = await http.get(base(namespace) + "/api/v1/health")
    assert unavailable.status_code == 503
    assert unavailable.json()["message"] == f'no endpoints available for service "{NAME}"'
    await kube.apply_deployment(namespace, manifests.deployment(NAME, replicas=1))
    await kube.wait_ready(namespace, NAME)
    assert (await http.get(base(namespace) + "/api/v1/health")).json()["pod"] != first_pod
    info = await http.get(base(namespace) + f"/api/v1/sessions/{sid}")
    assert info.status_code == 200 and info.json()["message_count"] == 2


async def test_agent_dies_mid_stream(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    sim.agent_die_after(3, namespace=namespace)
    received = []
    url = base(namespace) + f"/api/v1/sessions/{sid}/messages"
    with pytest.raises(httpx.RemoteProtocolError):
        async with aconnect_sse(http, "POST", url, json={"message": "x"}) as source:
            async for sse in source.aiter_sse():
                received.append(json.loads(sse.data))
    assert len(received) == 3
    assert sim.agent_records("died")[-1].session_id == sid
    # the next reply is healthy again (count=1)
    assert [p["type"] for _, p in await chat(http, namespace, sid, "again")][-1] == "complete"


async def test_pod_termination_stops_its_agent(
    http: httpx.AsyncClient,
    kube: Any,
    manifests: Any,
    namespace: str,
    project: Any,
    sim: SimClusterThread,
) -> None:
    await project(NAME)
    sid = await new_session(http, namespace)
    sim.set_agent(delta_delay=0.05, reply_deltas=400)
    start = len(sim.agent_records())
    url = base(namespace) + f"/api/v1/sessions/{sid}/messages"

    async def consume() -> None:
        async with aconnect_sse(http, "POST", url, json={"message": "long"}) as source:
            async for _ in source.aiter_sse():
                pass

    reader = asyncio.create_task(consume())
    assert (
        await sim.arun(sim.cluster.wait_agent_record("started", start=start, within=3)) is not None
    )
    await kube.apply_deployment(namespace, manifests.deployment(NAME, replicas=0))
    stopped = await sim.arun(sim.cluster.wait_agent_record("server_stopped", start=start, within=5))
    assert stopped is not None and stopped.session_id == sid
    with pytest.raises(httpx.HTTPError):
        await asyncio.wait_for(reader, 5)


async def test_pod_proxy(http: httpx.AsyncClient, kube: Any, namespace: str, project: Any) -> None:
    await project(NAME)
    pods = await kube.core.list_namespaced_pod(namespace)
    pod = pods.items[0].metadata.name
    response = await http.get(f"/api/v1/namespaces/{namespace}/pods/{pod}:3001/proxy/api/v1/health")
    assert response.status_code == 200 and response.json()["pod"] == pod
    for target in (NAME, f"http:{NAME}:3001", f"{NAME}:http"):
        via = await http.get(
            f"/api/v1/namespaces/{namespace}/services/{target}/proxy/api/v1/health"
        )
        assert via.status_code == 200, target
    missing = await http.get(
        f"/api/v1/namespaces/{namespace}/services/nothing:3001/proxy/api/v1/health"
    )
    assert missing.status_code == 404 and missing.json()["reason"] == "NotFound"
