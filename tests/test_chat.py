"""The chat relay over real HTTP: console (uvicorn) → API server proxy → simulated Goose pod."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from gooseui.devcluster import SimClusterThread
from gooseui.store import ProjectStore, create_client
from tests.conftest import live_console


@dataclass
class Chat:
    http: httpx.AsyncClient
    project: dict[str, Any]
    sim: SimClusterThread
    env: dict[str, str]

    @property
    def path(self) -> str:
        return f"/users/alice/projects/{self.project['project_id']}"


@pytest.fixture
async def chat(
    console_env: dict[str, str],
    request: pytest.FixtureRequest,
    sim: SimClusterThread,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Chat]:
    """A console served over HTTP with one active project."""
    monkeypatch.setenv("GOOSEUI_CHAT_KEEPALIVE", "0.25")
    async with live_console(request) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        project = (await http.post("/users/alice/projects", json={"name": "Chat"})).json()
        response = await http.post(f"/users/alice/projects/{project['project_id']}/activate")
        assert response.status_code == 200, response.text
        yield Chat(http, response.json(), sim, console_env)


async def stream(chat: Chat, message: str, **extra: Any) -> list[tuple[float, bytes]]:
    """Raw SSE blocks of a reply with their arrival times."""
    blocks: list[tuple[float, bytes]] = []
    buffer = b""
    async with chat.http.stream(
        "POST", f"{chat.path}/messages", json={"message": message, **extra}
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_raw():
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                blocks.append((time.monotonic(), block))
    return blocks


def payloads(blocks: list[tuple[float, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(b[5:]) for _, b in blocks if b.startswith(b"data:")]


async def test_reply_streams_incrementally(chat: Chat) -> None:
    blocks = await stream(chat, "hello, please use a tool")
    events = payloads(blocks)
    assert events[0]["type"] == "session" and events[-1]["type"] == "complete"
    session_id = events[0]["content"]["session_id"]
    deltas = [(t, b) for t, b in blocks if b'"type":"message"' in b]
    assert len(deltas) >= 10
    # deltas arrive as they are written, not all at once at the end
    assert deltas[-1][0] - deltas[0][0] > 0.1
    assert len({round(t, 3) for t, _ in deltas}) > len(deltas) // 2
    text = "".join(e["content"]["content"] for e in events if e["type"] == "message")
    assert "hello, please use a tool" in text
    tool_request = next(e for e in events if e["type"] == "tool_request")
    tool_response = next(e for e in events if e["type"] == "tool_response")
    assert tool_request["content"]["tool_name"] == "developer__shell"
    assert tool_response["content"]["id"] == tool_request["content"]["id"]
    # the agent's own bytes (compact JSON) are relayed, not re-serialised
    assert all(b.startswith(b'data: {"type":"') for _, b in blocks[1:] if b.startswith(b"data:"))
    stored = (await chat.http.get(chat.path)).json()
    assert stored["goose_session_id"] == session_id

    # a second message continues the same conversation
    again = payloads(await stream(chat, "and again"))
    assert again[0]["content"]["session_id"] == session_id
    history = (await chat.http.get(f"{chat.path}/messages")).json()
    assert history["session_id"] == session_id
    assert [m["role"] for m in history["messages"]] == ["User", "Assistant"] * 2


async def test_unknown_event_types_pass_through(chat: Chat) -> None:
    types = [e["type"] for e in payloads(await stream(chat, "simulate-unknown things"))]
    assert "thinking" in types and "x_future_event" in types and types[-1] == "complete"


async def test_split_events_arrive_whole(chat: Chat) -> None:
    chat.sim.agent_split_events(chunk_size=5, pause=0.002)
    async with aconnect_sse(
        chat.http, "POST", f"{chat.path}/messages", json={"message": "split me into pieces"}
    ) as source:
        events = [json.loads(sse.data) async for sse in source.aiter_sse()]
    assert events[0]["type"] == "session" and events[-1]["type"] == "complete"
    assert sum(e["type"] == "message" for e in events) >= 10


async def test_agent_dying_mid_stream_ends_with_error(chat: Chat) -> None:
    chat.sim.agent_die_after(5)
    events = payloads(await stream(chat, "this reply will be cut"))
    assert events[-1]["type"] == "error"
    assert events[-1]["content"]["code"] == "StreamInterrupted"
    assert "complete" not in [e["type"] for e in events]
    # the next message works again
    assert payloads(await stream(chat, "again"))[-1]["type"] == "complete"


async def test_stale_session_is_replaced(chat: Chat) -> None:
    from pymongo import AsyncMongoClient

    stale = str(uuid.uuid4())
    mongo: AsyncMongoClient = AsyncMongoClient(chat.env["MONGO_URI"])
    await mongo[chat.env["MONGO_DB"]]["projects"].update_one(
        {"project_id": chat.project["project_id"]}, {"$set": {"goose_session_id": stale}}
    )
    await mongo.close()
    events = payloads(await stream(chat, "do you know me?"))
    fresh = events[0]["content"]["session_id"]
    assert fresh != stale and events[-1]["type"] == "complete"
    assert (await chat.http.get(chat.path)).json()["goose_session_id"] == fresh


async def test_second_message_on_a_running_session_conflicts(chat: Chat) -> None:
    async with chat.http.stream(
        "POST", f"{chat.path}/messages", json={"message": "a long one"}
    ) as first:
        assert first.status_code == 200
        lines = first.aiter_lines()
        await anext(lines)  # the session event: the reply is running
        second = await chat.http.post(f"{chat.path}/messages", json={"message": "me too"})
        assert second.status_code == 409 and second.json()["code"] == "ReplyRunning"
        async for _ in lines:
            pass
    after = await chat.http.post(f"{chat.path}/messages", json={"message": "now"})
    assert after.status_code == 200


async def test_caller_disconnect_closes_upstream(chat: Chat) -> None:
    before = len(chat.sim.agent_records("client_disconnected"))
    async with chat.http.stream(
        "POST", f"{chat.path}/messages", json={"message": "I will leave early"}
    ) as response:
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data:")
            if seen == 3:
                break
        left = time.monotonic()
    record = await asyncio.to_thread(chat.sim.wait_agent_record, "client_disconnected", before, 3.0)
    assert record is not None, "the agent never saw its request closed"
    assert record.at - left < 1.0
    # and the session is free for the next message
    assert payloads(await stream(chat, "back again"))[-1]["type"] == "complete"


async def test_keepalives_while_the_agent_is_silent(chat: Chat) -> None:
    chat.sim.set_agent(delta_delay=0.4, keepalive=30)
    blocks = await stream(chat, "slow reply please")
    assert any(b.startswith(b":") for _, b in blocks)
    assert payloads(blocks)[-1]["type"] == "complete"


async def test_unicode_and_size_limits(chat: Chat) -> None:
    text = "Grüße 🪿 — 你好 " + "x" * 100
    events = payloads(await stream(chat, text))
    assert "Grüße 🪿 — 你好" in "".join(
        e["content"]["content"] for e in events if e["type"] == "message"
    )
    biggest = "é" * 65_536  # the most characters a message may have (128 KiB of UTF-8)
    assert payloads(await stream(chat, biggest))[-1]["type"] == "complete"
    history = (await chat.http.get(f"{chat.path}/messages")).json()
    assert history["messages"][-2]["content"] == biggest
    too_big = await chat.http.post(f"{chat.path}/messages", json={"message": biggest + "x"})
    assert too_big.status_code == 422 and too_big.json()["code"] == "MessageTooLarge"


async def test_errors_before_streaming(chat: Chat) -> None:
    empty = await chat.http.post(f"{chat.path}/messages", json={"message": "  "})
    assert empty.status_code == 422 and empty.json()["code"] == "EmptyMessage"
    missing = await chat.http.post(f"{chat.path}/messages", json={})
    assert missing.status_code == 422 and missing.json()["code"] == "InvalidRequest"
    unknown = await chat.http.post(
        "/users/alice/projects/abcdefgh/messages", json={"message": "hi"}
    )
    assert unknown.status_code == 404
    idle = (await chat.http.post("/users/alice/projects", json={"name": "Idle"})).json()
    for method, suffix, body in (
        ("POST", "messages", {"message": "hi"}),
        ("GET", "messages", None),
        ("POST", "sessions", None),
    ):
        response = await chat.http.request(
            method, f"/users/alice/projects/{idle['project_id']}/{suffix}", json=body
        )
        assert response.status_code == 409 and response.json()["code"] == "NotActive"


async def test_pod_unreachable_is_502(chat: Chat) -> None:
    assert payloads(await stream(chat, "open a session"))[-1]["type"] == "complete"
    # the pod goes away behind the console's back (kubectl scale --replicas=0)
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio import config as k8s_config

    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(
        config_file=str(chat.sim.kubeconfig_path), client_configuration=configuration
    )
    async with k8s.ApiClient(configuration) as api:
        await k8s.AppsV1Api(api).patch_namespaced_deployment_scale(
            chat.project["deployment"], chat.project["namespace"], {"spec": {"replicas": 0}}
        )
        for _ in range(200):
            pods = await k8s.CoreV1Api(api).list_namespaced_pod(
                chat.project["namespace"],
                label_selector=f"gooseui.io/project-id={chat.project['project_id']}",
            )
            if not pods.items:
                break
            await asyncio.sleep(0.02)
    response = await chat.http.post(f"{chat.path}/messages", json={"message": "anyone?"})
    assert response.status_code == 502
    assert response.json()["code"] == "AgentUnreachable"
    # with a session already open, the message itself meets the missing pod
    assert "cannot be reached" in response.json()["detail"]


async def test_new_conversation(chat: Chat) -> None:
    first = payloads(await stream(chat, "remember this"))[0]["content"]["session_id"]
    created = await chat.http.post(f"{chat.path}/sessions")
    assert created.status_code == 201
    new = created.json()["session_id"]
    assert new != first
    history = (await chat.http.get(f"{chat.path}/messages")).json()
    assert history["session_id"] == new and history["messages"] == []
    assert payloads(await stream(chat, "fresh start"))[0]["content"]["session_id"] == new


async def test_session_ids_are_tokens_not_paths(chat: Chat) -> None:
    response = await chat.http.post(
        f"{chat.path}/messages",
        json={"message": "hi", "session_id": "../../../../api/v1/namespaces"},
    )
    assert response.status_code == 422 and response.json()["code"] == "InvalidRequest"


async def test_caller_gone_before_the_first_byte_frees_the_session(chat: Chat) -> None:
    chat.sim.set_agent(delta_delay=0.2)
    session = (await chat.http.post(f"{chat.path}/sessions")).json()["session_id"]
    body = json.dumps({"message": "leave at once", "session_id": session}).encode()
    host, port = chat.http.base_url.host, chat.http.base_url.port
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST " + chat.path.encode() + b"/messages HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    await writer.drain()
    writer.close()  # gone before any answer
    await writer.wait_closed()
    for _ in range(100):
        response = await chat.http.post(
            f"{chat.path}/messages", json={"message": "again", "session_id": session}
        )
        if response.status_code == 200:
            break
        assert response.json()["code"] == "ReplyRunning"
        await asyncio.sleep(0.05)
    assert response.status_code == 200, "the session stayed locked after the caller left"


async def test_tool_calls_and_errors_are_kept_in_the_history(chat: Chat) -> None:
    """The agent's history keeps only text; the console keeps each reply's tool calls and
    errors, and gives them back with the user message that prompted them."""
    await stream(chat, "hello, please use a tool")
    chat.sim.agent_die_after(5)
    await stream(chat, "this reply will be cut")
    await stream(chat, "plain again")

    async def kept() -> list[dict[str, Any]]:
        history = (await chat.http.get(f"{chat.path}/messages")).json()
        return [m for m in history["messages"] if m["role"].lower() == "user"]

    for _ in range(100):  # the records are written just after each reply
        users = await kept()
        if len(users) == 3 and all("events" in m for m in users):
            break
        await asyncio.sleep(0.05)
    tool, cut, plain = users
    kinds = [e["type"] for e in tool["events"]]
    assert kinds == ["tool_request", "tool_response"]
    assert tool["events"][0]["content"]["tool_name"] == "developer__shell"
    assert cut["events"][-1]["type"] == "error"
    assert cut["events"][-1]["content"]["code"] == "StreamInterrupted"
    assert plain["events"] == []  # recorded too: turns are matched to messages in order
    # deleting the project deletes what was kept of its replies
    assert (await chat.http.post(f"{chat.path}/deactivate")).status_code == 200
    assert (await chat.http.delete(chat.path)).status_code == 204

    client = create_client(chat.env["MONGO_URI"])
    store = ProjectStore(client, chat.env["MONGO_DB"], "projects")
    try:
        raw = await store._turns.count_documents({"project_id": chat.project["project_id"]})
    finally:
        await client.close()
    assert raw == 0
