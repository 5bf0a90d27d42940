"""The simulated Goose agent, reached through the API server's service proxy (httpx-sse).

The streaming behaviour a relay depends on: deltas arrive spread out, events split across
network reads, keep-alives, disconnects, the agent dying, pods coming and going. The rows
of GOOSE_API.md one by one are in `test_sim_agent_real.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from gooseui.devcluster import SimClusterThread
from tests.devcluster.conftest import agent_base, chat, new_session, text_of

NAME = "proj-chat-api"


def base(namespace: str, name: str = NAME) -> str:
    return agent_base(namespace, name)


async def test_health_sessions_and_incremental_stream(
    http: httpx.AsyncClient, namespace: str, project: Any, agent_env: dict[str, str]
) -> None:
    await project(NAME)
    health = await http.get(base(namespace) + "/api/v1/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["database_connected"] is True
    assert body["storage_type"] == "mongodb"
    assert body["mongodb_url"] == agent_env["MONGODB_URL"]  # credentials included
    assert body["mongodb_database"] == agent_env["MONGODB_DATABASE"]

    sid = await new_session(http, base(namespace))
    events = await chat(http, base(namespace), sid, "hello there")
    kinds = [p["type"] for _, p in events]
    assert kinds[-1] == "complete"
    assert events[-1][1]["content"] == {
        "message": "Response complete",
        "session_id": sid,
        "storage": "mongodb",
    }
    deltas = [(t, p) for t, p in events if p["type"] == "message"]
    assert len(deltas) >= 10
    assert all(
        p["content"]["role"] == "Assistant"
        and p["content"]["content_type"] == "text"
        and p["content"]["session_id"] == sid
        and isinstance(p["content"]["timestamp"], int)
        for _, p in deltas
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
    assert [m["timestamp"] for m in history["messages"]] == [None, None]
    assert history["total_count"] == 2
    assert history["messages"][1]["content"] == text_of(events)


async def test_tool_call_events(http: httpx.AsyncClient, namespace: str, project: Any) -> None:
    await project(NAME)
    sid = await new_session(http, base(namespace))
    events = await chat(http, base(namespace), sid, "please use a tool")
    kinds = [p["type"] for _, p in events]
    at = kinds.index("tool_request")
    assert kinds[at + 1] == "tool_response"
    request, response = events[at][1]["content"], events[at + 1][1]["content"]
    assert request["tool_name"] == "developer__shell"
    assert request["arguments"] == {"command": "echo simulated tool"}
    assert request["id"] == response["id"]
    assert response["is_error"] is False
    assert [c["text"] for c in response["result"]["Ok"]] == ["simulated tool\n"] * 2
    assert kinds[-1] == "complete"


async def test_error_mid_stream_then_complete(
    http: httpx.AsyncClient, namespace: str, project: Any
) -> None:
    await project(NAME)
    sid = await new_session(http, base(namespace))
    events = await chat(http, base(namespace), sid, "simulate-error please")
    assert [p["type"] for _, p in events][-2:] == ["error", "complete"]
    error = events[-2][1]["content"]
    assert error["message"] == "Agent processing error" and "simulated" in error["error"]
    # the real server saves what it had before the failure
    history = (await http.get(base(namespace) + f"/api/v1/sessions/{sid}/messages")).json()
    assert [m["role"] for m in history["messages"]] == ["User", "Assistant"]
    assert history["messages"][1]["content"] == text_of(events)


async def test_split_events_are_reassembled(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, base(namespace))
    plain = await chat(http, base(namespace), sid, "same words")
    sim.agent_split_events(chunk_size=16, pause=0.0005, namespace=namespace)
    reads = 0
    url = base(namespace) + f"/api/v1/sessions/{sid}/messages"
    async with http.stream("POST", url, json={"message": "count my reads"}) as response:
        async for _chunk in response.aiter_raw():
            reads += 1
    split = await chat(http, base(namespace), sid, "same words")
    assert reads > 50  # the agent really wrote many small pieces
    assert [p["type"] for _, p in split] == [p["type"] for _, p in plain]
    assert text_of(split) == text_of(plain)


async def test_keepalive_comments_and_wire_format(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, base(namespace))
    sim.set_agent(delta_delay=0.05, keepalive=0.02, reply_deltas=12)
    lines = []
    async with http.stream(
        "POST", base(namespace) + f"/api/v1/sessions/{sid}/messages", json={"message": "hi"}
    ) as response:
        async for line in response.aiter_lines():
            lines.append(line)
    comments = [line for line in lines if line.startswith(":")]
    data = [line for line in lines if line.startswith("data: ")]
    assert comments and all(c == ":" for c in comments)  # axum's keep-alive: an empty comment
    assert len(data) == 13  # 12 deltas + complete
    assert all(line.startswith(("data: ", ":")) or line == "" for line in lines)
    for line in data:
        json.loads(line[len("data: ") :])


async def test_keepalive_only_after_silence(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    """axum resets its keep-alive timer on every event: a busy stream carries none."""
    await project(NAME)
    sid = await new_session(http, base(namespace))
    sim.set_agent(delta_delay=0.01, keepalive=0.2, reply_deltas=40)
    url = base(namespace) + f"/api/v1/sessions/{sid}/messages"
    async with http.stream("POST", url, json={"message": "busy"}) as response:
        lines = [line async for line in response.aiter_lines()]
    assert not [line for line in lines if line.startswith(":")]


async def test_client_disconnect_is_seen_by_the_agent(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, base(namespace))
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
    # the user message was saved before the reply, the partial reply is not
    history = (await http.get(base(namespace) + f"/api/v1/sessions/{sid}/messages")).json()
    assert [m["role"] for m in history["messages"]] == ["User"]


async def test_concurrent_replies_in_one_session(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    """The real server has no per-session lock: a second reply is accepted (the console
    must enforce one at a time itself)."""
    await project(NAME)
    sid = await new_session(http, base(namespace))
    sim.set_agent(delta_delay=0.02, reply_deltas=20)
    first, second = await asyncio.gather(
        chat(http, base(namespace), sid, "first"), chat(http, base(namespace), sid, "second")
    )
    assert [p["type"] for _, p in first][-1] == "complete"
    assert [p["type"] for _, p in second][-1] == "complete"
    history = (await http.get(base(namespace) + f"/api/v1/sessions/{sid}/messages")).json()
    assert sorted(m["role"] for m in history["messages"]) == ["Assistant"] * 2 + ["User"] * 2


async def test_unknown_session(http: httpx.AsyncClient, namespace: str, project: Any) -> None:
    await project(NAME)
    info = await http.get(base(namespace) + "/api/v1/sessions/nope")
    assert info.status_code == 404
    assert info.json() == {
        "session_id": "not_found",
        "created_at": "",
        "updated_at": "",
        "message_count": 0,
    }
    assert (await http.delete(base(namespace) + "/api/v1/sessions/nope")).status_code == 404
    history = await http.get(base(namespace) + "/api/v1/sessions/nope/messages")
    assert history.status_code == 404
    assert history.json() == {"session_id": "nope", "messages": [], "total_count": 0}
    # a reply to an unknown session is 200 with ONE error event, and no complete
    events = await chat(http, base(namespace), "nope", "x")
    assert [p for _, p in events] == [
        {
            "type": "error",
            "content": {
                "error": "Session not found",
                "message": "Session nope not found in MongoDB",
            },
        }
    ]
    sid = await new_session(http, base(namespace))
    assert (await http.delete(base(namespace) + f"/api/v1/sessions/{sid}")).status_code == 204
    assert (await http.get(base(namespace) + f"/api/v1/sessions/{sid}")).status_code == 404


async def test_sessions_survive_a_pod_restart(
    http: httpx.AsyncClient, kube: Any, manifests: Any, namespace: str, project: Any
) -> None:
    await project(NAME)
    selector = f"app.kubernetes.io/instance={NAME}"
    sid = await new_session(http, base(namespace))
    await chat(http, base(namespace), sid, "remember me")
    first_pod = (await kube.core.list_namespaced_pod(namespace)).items[0].metadata.name
    await kube.apply_deployment(namespace, manifests.deployment(NAME, replicas=0))
    await kube.wait_pods(namespace, selector, lambda pods: not pods)
    unavailable = await http.get(base(namespace) + "/api/v1/health")
    assert unavailable.status_code == 503
    assert unavailable.json()["message"] == f'no endpoints available for service "{NAME}"'
    await kube.apply_deployment(namespace, manifests.deployment(NAME, replicas=1))
    await kube.wait_ready(namespace, NAME)
    second_pod = (await kube.core.list_namespaced_pod(namespace)).items[0].metadata.name
    assert second_pod != first_pod
    info = await http.get(base(namespace) + f"/api/v1/sessions/{sid}")
    assert info.status_code == 200 and info.json()["message_count"] == 2


async def test_agent_dies_mid_stream(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    sid = await new_session(http, base(namespace))
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
    assert [p["type"] for _, p in await chat(http, base(namespace), sid, "again")][-1] == (
        "complete"
    )


async def test_pod_termination_stops_its_agent(
    http: httpx.AsyncClient,
    kube: Any,
    manifests: Any,
    namespace: str,
    project: Any,
    sim: SimClusterThread,
) -> None:
    await project(NAME)
    sid = await new_session(http, base(namespace))
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
    assert response.status_code == 200 and response.json()["status"] == "ok"
    for target in (NAME, f"http:{NAME}:3001", f"{NAME}:http"):
        via = await http.get(
            f"/api/v1/namespaces/{namespace}/services/{target}/proxy/api/v1/health"
        )
        assert via.status_code == 200, target
    missing = await http.get(
        f"/api/v1/namespaces/{namespace}/services/nothing:3001/proxy/api/v1/health"
    )
    assert missing.status_code == 404 and missing.json()["reason"] == "NotFound"
