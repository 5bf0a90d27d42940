"""GOOSE_API.md row by row against the simulated agent: it must refuse and answer exactly
as the real `goose api-server` does, so that a console passing here works on the real image.

Routes are reached the real way (the API server's service proxy, httpx); start-up rows both
through a pod (its status and its log subresource) and, for the exact lines, by starting
the agent process directly as the kubelet does (`GooseServer.start()` raising `AgentExit`).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from pymongo import AsyncMongoClient

from gooseui.devcluster import AgentSettings, SimClusterThread
from gooseui.devcluster.faults import Faults
from gooseui.devcluster.goose import AgentDatabases, AgentLog, GooseServer
from gooseui.devcluster.process import AgentExit, Launch
from gooseui.embedded import EmbeddedMongo
from tests.conftest import MONGO_PASSWORD_MARKER, PROVIDER_KEY_MARKER
from tests.devcluster.conftest import agent_base, chat, new_session, text_of

NAME = "proj-real-api"
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (DEBUG| INFO| WARN|ERROR) [a-z_:]+: .+"
)


def base(namespace: str, name: str = NAME) -> str:
    return agent_base(namespace, name)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------- start-up, direct


@pytest.fixture
async def databases() -> AsyncIterator[AgentDatabases]:
    shared = AgentDatabases()
    yield shared
    await shared.close()


Start = Callable[..., Any]


@pytest.fixture
async def start(databases: AgentDatabases) -> AsyncIterator[Start]:
    """Start an agent process from an environment: (server, its output, the exit or None)."""
    servers: list[GooseServer] = []

    async def run(
        env: dict[str, str], files: dict[str, str] | None = None
    ) -> tuple[GooseServer, list[str], AgentExit | None]:
        lines: list[str] = []
        server = GooseServer(
            Launch("goose-api-0", ("ns", "dep"), env, files or {}, lines.append),
            databases,
            lambda: AgentSettings(delta_delay=0.0, tool_delay=0.0),
            Faults(),
            AgentLog(),
        )
        servers.append(server)
        try:
            await server.start()
        except AgentExit as exit_:
            return server, lines, exit_
        return server, lines, None

    yield run
    for server in servers:
        await server.stop()


PROVIDER = {"GOOSE_PROVIDER": "simulated", "GOOSE_MODEL": "simulated-agent"}


async def test_no_provider_or_model_exits_before_anything_else(start: Start) -> None:
    """GOOSE_PROVIDER is checked first (before MONGODB_URL), then GOOSE_MODEL."""
    server, lines, exit_ = await start({})
    assert exit_ is not None and exit_.code == 1 and server.port == 0
    assert lines[-4:] == [
        "Error: No provider configured. Run 'goose configure' first",
        "",
        "Caused by:",
        "    Configuration value not found: GOOSE_PROVIDER",
    ]
    assert not any("MongoDB URL is required" in line for line in lines)
    _, lines, exit_ = await start({"GOOSE_PROVIDER": "simulated"})
    assert exit_ is not None and exit_.code == 1
    assert "Error: No model configured. Run 'goose configure' first" in lines
    # goose reads an environment value as JSON first: a number is not a model name
    _, lines, exit_ = await start({"GOOSE_PROVIDER": "simulated", "GOOSE_MODEL": "4"})
    assert exit_ is not None
    assert "    Failed to deserialize value: invalid type: integer `4`, expected a string" in lines


async def test_provider_must_be_known_and_have_its_credentials(
    start: Start, agent_env: dict[str, str]
) -> None:
    _, lines, exit_ = await start({"GOOSE_PROVIDER": "gpt-simulator", "GOOSE_MODEL": "m"})
    assert exit_ is not None and exit_.code == 1
    assert lines[-4:] == [
        "Error: Failed to create provider",
        "",
        "Caused by:",
        "    Unknown provider: gpt-simulator",
    ]
    _, lines, exit_ = await start({"GOOSE_PROVIDER": "openai", "GOOSE_MODEL": "gpt-4o"})
    assert exit_ is not None
    assert lines[-1] == "    Configuration value not found: OPENAI_API_KEY"
    # with its key a real provider starts (the simulated model answers for it)
    server, lines, exit_ = await start(
        {
            "GOOSE_PROVIDER": "openai",
            "GOOSE_MODEL": "gpt-4o",
            "OPENAI_API_KEY": PROVIDER_KEY_MARKER,
            "MONGODB_URL": agent_env["MONGODB_URL"],
        }
    )
    assert exit_ is None and server.port > 0


async def test_no_mongodb_url_exits_1(start: Start) -> None:
    server, lines, exit_ = await start(dict(PROVIDER))
    assert exit_ is not None and exit_.code == 1 and server.port == 0
    assert [line.split(": ", 1)[1] for line in lines[-4:]] == [
        "❌ MongoDB URL is required!",
        "Provide via --database-url or MONGODB_URL environment variable",
        "Example: --database-url mongodb://localhost:27017",
        "This API server requires MongoDB - no local storage fallback",
    ]
    assert all(" ERROR goose_cli::commands::api_server: " in line for line in lines[-4:])
    assert not any(line.startswith("Error: ") for line in lines)  # process::exit, no report


async def test_unreachable_mongodb_exits_before_binding(start: Start) -> None:
    url = f"mongodb://goose:{MONGO_PASSWORD_MARKER}@127.0.0.1:{closed_port()}/"
    server, lines, exit_ = await start({**PROVIDER, "MONGODB_URL": url})
    assert exit_ is not None and exit_.code == 1 and server.port == 0
    assert "Error: Failed to initialize MongoDB connection" in lines
    assert "    0: Failed to ping MongoDB server" in lines
    assert any(f"Connecting to MongoDB: {url}" in line for line in lines)  # password and all
    # the simulator reaches loopback only: any other host is unreachable (and not contacted)
    _, lines, exit_ = await start({**PROVIDER, "MONGODB_URL": "mongodb://mongo.example:27017/"})
    assert exit_ is not None and "    0: Failed to ping MongoDB server" in lines
    _, lines, exit_ = await start({**PROVIDER, "MONGODB_URL": "localhost:27017"})
    assert exit_ is not None and "    0: Failed to parse MongoDB connection URL" in lines


async def test_config_yaml_provides_provider_model_and_extensions(
    start: Start, agent_env: dict[str, str]
) -> None:
    config = {
        "GOOSE_PROVIDER": "simulated",
        "GOOSE_MODEL": "from-config",
        "extensions": {
            "developer": {"enabled": True, "type": "builtin", "name": "developer"},
            "memory": {"enabled": False, "type": "builtin", "name": "memory"},
            "nosuch": {"enabled": True, "type": "builtin", "name": "nosuch"},
            "fetch": {"enabled": True, "type": "stdio", "name": "fetch", "cmd": "uvx", "args": []},
        },
    }
    files = {"/tmp/.config/goose/config.yaml": json.dumps(config)}  # JSON is YAML
    env = {"HOME": "/tmp", "MONGODB_URL": agent_env["MONGODB_URL"], "GOOSE_MODEL": "from-env"}
    server, lines, exit_ = await start(env, files)
    assert exit_ is None, lines
    text = "\n".join(lines)
    assert "🤖 Using provider: simulated with model: from-env" in text  # the environment wins
    assert "DEBUG goose_cli::commands::api_server: ✅ Loaded extension: developer" in text
    assert "WARN goose_cli::commands::api_server: ⚠️ Failed to load extension nosuch" in text
    assert "🧩 Loaded 2 extensions" in text and "extension: memory" not in text
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as direct:
        listed = (await direct.get("/api/v1/extensions")).json()
        assert [e["name"] for e in listed["extensions"]] == [
            "developer",
            "fetch",
            "memory",
            "nosuch",
        ]
        assert listed["extensions"][1]["cmd"] == "uvx" and listed["total_count"] == 4
        # a ConfigMap volume is read-only: the real server cannot write its config.yaml
        refused = await direct.put("/api/v1/settings/GOOSE_TEMPERATURE", json={"value": 0.5})
        assert refused.status_code == 500
        assert refused.json() == {
            "error": "Failed to update setting",
            "message": "Failed to read config file: Read-only file system (os error 30)",
        }
    broken = {"/tmp/.config/goose/config.yaml": "extensions: [1, 2"}
    _, lines, exit_ = await start({**env, "GOOSE_PROVIDER": "simulated"}, broken)
    assert exit_ is not None and "Error: Failed to load extension configuration" in lines


async def test_default_database_and_health_body(start: Start, agent_env: dict[str, str]) -> None:
    server, _, exit_ = await start({**PROVIDER, "MONGODB_URL": agent_env["MONGODB_URL"]})
    assert exit_ is None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as direct:
        health = await direct.get("/api/v1/health")
    assert health.status_code == 200
    assert health.headers["content-type"] == "application/json"
    assert health.headers["access-control-allow-origin"] == "*"
    body = health.json()
    assert body["mongodb_database"] == "goose_sessions"
    assert body["mongodb_url"] == agent_env["MONGODB_URL"]
    assert set(body) >= {"status", "timestamp", "version", "database_connected", "storage_type"}
    assert body["timestamp"].isdigit()  # a string of seconds


async def test_body_limit_is_axums(start: Start, agent_env: dict[str, str]) -> None:
    """2 MiB (axum's DefaultBodyLimit); checked directly, as the simulated API server's proxy
    is not the subject here."""
    server, _, exit_ = await start({**PROVIDER, "MONGODB_URL": agent_env["MONGODB_URL"]})
    assert exit_ is None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as direct:
        sid = (await direct.post("/api/v1/sessions")).json()["session_id"]
        large = await direct.post(
            f"/api/v1/sessions/{sid}/messages", json={"message": "x" * (2 * 1024 * 1024)}
        )
        assert large.status_code == 413
        assert large.text == "Failed to buffer the request body: length limit exceeded"
        fits = await direct.post(
            f"/api/v1/sessions/{sid}/send", json={"message": "x" * (2 * 1024 * 1024 - 20)}
        )
        assert fits.status_code == 200


# ---------------------------------------------------------------------------- start-up, as a pod


async def test_startup_and_health_logs_carry_secrets(
    http: httpx.AsyncClient, kube: Any, namespace: str, project: Any, agent_env: dict[str, str]
) -> None:
    """The real server logs the provider keys and the whole MONGODB_URL at INFO, and the
    URL again at every health call: the console must redact them, the simulator must not."""
    blackbox = "bb-MARKER-" + uuid.uuid4().hex[:6]
    await project(NAME, env={"OPENAI_API_KEY": PROVIDER_KEY_MARKER, "BLACKBOX_API_KEY": blackbox})
    pod = (await kube.core.list_namespaced_pod(namespace)).items[0].metadata.name
    before = await kube.core.read_namespaced_pod_log(pod, namespace)
    url = agent_env["MONGODB_URL"]
    assert MONGO_PASSWORD_MARKER in url
    lines = before.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), lines
    info = [line.split(": ", 1)[1] for line in lines if " INFO " in line]
    assert f"OPENAI_API_KEY: {PROVIDER_KEY_MARKER}" in info
    assert f"BLACKBOX_API_KEY: {blackbox}" in info
    assert f"📊 Database: {agent_env['MONGODB_DATABASE']} ({url})" in info
    assert "✨ Goose API Server Ready!" in info
    await http.get(base(namespace) + "/api/v1/health")
    after = await kube.core.read_namespaced_pod_log(pod, namespace)
    again = after[len(before) :]
    assert f'INFO goose_cli::commands::api_server: MONGODB_URL: Ok("{url}")' in again


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (PROVIDER, "❌ MongoDB URL is required!"),
        ({}, "Error: No provider configured. Run 'goose configure' first"),
    ],
    ids=["no-mongodb-url", "nothing"],
)
async def test_pod_without_its_environment_crash_loops(
    http: httpx.AsyncClient,
    kube: Any,
    namespace: str,
    project: Any,
    env: dict[str, str],
    line: str,
) -> None:
    """The kubelet turns the agent's exit into CrashLoopBackOff; the reason is in its log."""
    await project(NAME, wait=False, agent_env=False, env=dict(env))
    selector = f"app.kubernetes.io/instance={NAME}"

    def crash_looping(pods: list[dict[str, Any]]) -> bool:
        for pod in pods:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if waiting.get("reason") == "CrashLoopBackOff" and last.get("exitCode") == 1:
                    return True
        return False

    pods = await kube.wait_pods(namespace, selector, crash_looping, within=10)
    status = pods[0]["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert status["restartCount"] >= 1 and status["ready"] is False
    log = await kube.core.read_namespaced_pod_log(
        pods[0]["metadata"]["name"], namespace, previous=True
    )
    assert line in log.splitlines() or any(x.endswith(line) for x in log.splitlines())
    # never serving: the service has no endpoints
    unavailable = await http.get(base(namespace) + "/api/v1/health")
    assert unavailable.status_code == 503


# ---------------------------------------------------------------------------- routes


async def test_session_routes(http: httpx.AsyncClient, namespace: str, project: Any) -> None:
    await project(NAME)
    root = base(namespace)
    created = await http.post(root + "/api/v1/sessions")  # no body
    assert created.status_code == 201 and list(created.json()) == ["session_id"]
    sid = created.json()["session_id"]
    assert uuid.UUID(sid).version == 4
    info = (await http.get(root + f"/api/v1/sessions/{sid}")).json()
    assert info["session_id"] == sid and info["message_count"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", info["created_at"])
    # Rust's Debug of the stored BSON string, as the real server answers it
    assert re.fullmatch(r'String\("\d{4}-\d\d-\d\dT[\d:.]+Z"\)', info["updated_at"])
    other = await new_session(http, root)
    listed = (await http.get(root + "/api/v1/sessions")).json()
    assert listed["total"] == 2 and {s["session_id"] for s in listed["sessions"]} == {sid, other}
    assert listed["sessions"][0]["session_id"] == other  # newest first
    deleted = await http.delete(root + f"/api/v1/sessions/{sid}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await http.delete(root + f"/api/v1/sessions/{sid}")).status_code == 404


async def test_sessions_shared_by_url_and_database(
    http: httpx.AsyncClient, namespace: str, project: Any
) -> None:
    """Pods on one URL and database see each other's sessions (GET /sessions has no tenant
    filter); another database is another world."""
    await project("proj-one-api")
    await project("proj-two-api")
    await project("proj-else-api", env={"MONGODB_DATABASE": f"goose_other_{uuid.uuid4().hex[:8]}"})
    sid = await new_session(http, base(namespace, "proj-one-api"))
    await chat(http, base(namespace, "proj-one-api"), sid, "shared")
    seen = await http.get(base(namespace, "proj-two-api") + f"/api/v1/sessions/{sid}")
    assert seen.status_code == 200 and seen.json()["message_count"] == 2
    listed = (await http.get(base(namespace, "proj-two-api") + "/api/v1/sessions")).json()
    assert sid in {s["session_id"] for s in listed["sessions"]}
    isolated = await http.get(base(namespace, "proj-else-api") + f"/api/v1/sessions/{sid}")
    assert isolated.status_code == 404
    assert (await http.get(base(namespace, "proj-else-api") + "/api/v1/sessions")).json() == {
        "sessions": [],
        "total": 0,
    }


async def test_documents_are_shaped_like_database_rs(
    http: httpx.AsyncClient, namespace: str, project: Any, agent_env: dict[str, str]
) -> None:
    await project(NAME)
    sid = await new_session(http, base(namespace))
    events = await chat(http, base(namespace), sid, "store me")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(agent_env["MONGODB_URL"])
    try:
        db = mongo[agent_env["MONGODB_DATABASE"]]
        session = await db.sessions.find_one({"session_id": sid})
        messages = [m async for m in db.messages.find({"session_id": sid}).sort("timestamp", 1)]
    finally:
        await mongo.close()
    assert session is not None and session["_id"] == sid
    assert set(session) == {"_id", "session_id", "created_at", "updated_at"}
    assert all(isinstance(session[k], str) for k in session)
    assert [(m["role"], m["content"]) for m in messages] == [
        ("User", "store me"),
        ("Assistant", text_of(events)),
    ]
    for message in messages:
        assert set(message) == {"_id", "session_id", "role", "content", "timestamp"}
        assert isinstance(message["_id"], str) and message["timestamp"].endswith("Z")


async def test_request_rejections_are_axums(
    http: httpx.AsyncClient, namespace: str, project: Any
) -> None:
    await project(NAME)
    root = base(namespace)
    sid = await new_session(http, root)
    url = root + f"/api/v1/sessions/{sid}/messages"
    plain = await http.post(url, content=b'{"message":"x"}', headers={"content-type": "text/plain"})
    assert plain.status_code == 415
    assert plain.text == "Expected request with `Content-Type: application/json`"
    bad = await http.post(url, content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.text.startswith("Failed to parse the request body")
    missing = await http.post(url, json={"text": "x"})
    assert missing.status_code == 422
    assert "missing field `message`" in missing.text
    wrong = await http.post(url, json={"message": 5})
    assert wrong.status_code == 422 and "invalid type: integer `5`" in wrong.text
    # nothing was saved by the rejected requests
    assert (await http.get(root + f"/api/v1/sessions/{sid}")).json()["message_count"] == 0
    nowhere = await http.get(root + "/api/v1/nothing")
    assert nowhere.status_code == 404 and nowhere.content == b""
    method = await http.put(root + "/api/v1/health")
    assert method.status_code == 405 and method.content == b""


async def test_send_answers_one_json(http: httpx.AsyncClient, namespace: str, project: Any) -> None:
    await project(NAME)
    root = base(namespace)
    sid = await new_session(http, root)
    sent = await http.post(root + f"/api/v1/sessions/{sid}/send", json={"message": "a tool"})
    assert sent.status_code == 200
    body = sent.json()
    assert set(body) == {
        "message",
        "session_id",
        "assistant_response",
        "timestamp",
        "tool_calls_count",
    }
    assert body["message"] == "Message processed successfully" and body["tool_calls_count"] == 1
    assert body["session_id"] == sid and "a tool" in body["assistant_response"]
    unknown = await http.post(root + "/api/v1/sessions/nope/send", json={"message": "x"})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": "Session not found",
        "message": "Session nope not found in MongoDB",
    }
    failed = await http.post(
        root + f"/api/v1/sessions/{sid}/send", json={"message": "simulate-error"}
    )
    assert failed.status_code == 500 and failed.json()["error"] == "Agent processing failed"
    history = (await http.get(root + f"/api/v1/sessions/{sid}/messages")).json()
    # the failed reply's user message is saved, its partial answer is not (unlike /messages)
    assert [m["role"] for m in history["messages"]] == ["User", "Assistant", "User"]


async def test_reply_event_shapes(http: httpx.AsyncClient, namespace: str, project: Any) -> None:
    await project(NAME)
    root = base(namespace)
    sid = await new_session(http, root)
    # a failure to start the agent: one error, and no complete
    failed = [p for _, p in await chat(http, root, sid, "simulate-start-failure")]
    assert [p["type"] for p in failed] == ["error"]
    assert failed[0]["content"]["message"] == "Failed to start agent processing"
    # a tool that fails: its result is Err
    tool = [p for _, p in await chat(http, root, sid, "simulate-tool-error")]
    response = next(p["content"] for p in tool if p["type"] == "tool_response")
    assert response["is_error"] is True and set(response["result"]) == {"Err"}
    # unknown event types and a thinking event
    unknown = [p["type"] for _, p in await chat(http, root, sid, "simulate-unknown")]
    assert unknown[:2] == ["thinking", "x_future_event"] and unknown[-1] == "complete"
    # a compaction: history_update, and the stored history replaced
    compact = await chat(http, root, sid, "simulate-compact")
    update = compact[0][1]
    assert update == {"type": "history_update", "content": {"message_count": 2, "session_id": sid}}
    history = (await http.get(root + f"/api/v1/sessions/{sid}/messages")).json()
    assert [(m["role"], m["message_index"]) for m in history["messages"]] == [
        ("Assistant", 0),
        ("User", 1),
        ("Assistant", 2),
    ]
    assert history["messages"][1]["content"] == "simulate-compact"


async def test_approval_mode_hangs_at_the_tool_confirmation(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    """The API has no route to confirm a tool call: without GOOSE_MODE=auto a reply that
    calls a tool never ends (keep-alives only); `chat` mode calls no tools at all."""
    await project(NAME, env={"GOOSE_MODE": "approve"})
    await project("proj-chatmode-api", env={"GOOSE_MODE": "chat"})
    sim.set_agent(keepalive=0.1)
    root = base(namespace)
    sid = await new_session(http, root)
    kinds: list[str] = []
    comments = 0
    url = root + f"/api/v1/sessions/{sid}/messages"

    async def read() -> None:
        nonlocal comments
        async with http.stream("POST", url, json={"message": "use a tool"}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    kinds.append(json.loads(line[6:])["type"])
                elif line == ":":
                    comments += 1

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(read(), 1.0)
    assert kinds[-2:] == ["tool_request", "tool_confirmation"] and "complete" not in kinds
    assert comments >= 3
    chat_root = base(namespace, "proj-chatmode-api")
    chat_sid = await new_session(http, chat_root)
    plain = [p["type"] for _, p in await chat(http, chat_root, chat_sid, "use a tool")]
    assert "tool_request" not in plain and plain[-1] == "complete"


async def test_agent_status(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    await project(NAME)
    root = base(namespace)
    sid = await new_session(http, root)
    idle = (await http.get(root + "/api/v1/agent/status")).json()
    assert idle["overall_status"] == "idle" and idle["active_sessions"] == 0
    assert set(idle) == {
        "overall_status",
        "active_sessions",
        "total_processed",
        "uptime_seconds",
        "sessions",
    }
    sim.set_agent(delta_delay=0.05, reply_deltas=40)
    url = root + f"/api/v1/sessions/{sid}/messages"
    async with aconnect_sse(http, "POST", url, json={"message": "busy"}) as source:
        async for _ in source.aiter_sse():
            busy = (await http.get(root + "/api/v1/agent/status")).json()
            break
    assert busy["overall_status"] == "processing" and busy["active_sessions"] == 1
    entry = busy["sessions"][0]
    assert entry["session_id"] == sid and entry["endpoint_type"] == "agent-streaming"
    assert set(entry["start_time"]) == {"secs_since_epoch", "nanos_since_epoch"}
    # the reply cut by the client disconnect stays "processing", as in the real server
    sim.set_agent(delta_delay=0.0, reply_deltas=5)
    other = await new_session(http, root)
    await chat(http, root, other, "quick")
    after = (await http.get(root + "/api/v1/agent/status")).json()
    assert after["total_processed"] == 1
    statuses = {s["session_id"]: s["status"] for s in after["sessions"]}
    assert statuses == {sid: "processing", other: "completed"}


async def test_provider_stream_and_export(
    http: httpx.AsyncClient, namespace: str, project: Any, agent_env: dict[str, str]
) -> None:
    await project(NAME)
    root = base(namespace)
    sid = await new_session(http, root)
    payloads = []
    url = root + f"/api/v1/sessions/{sid}/stream"
    async with aconnect_sse(http, "POST", url, json={"message": "tokens"}) as source:
        async for sse in source.aiter_sse():
            payloads.append(json.loads(sse.data))
    assert {p["type"] for p in payloads[:-1]} == {"token"}
    assert payloads[-1]["type"] == "complete"
    assert payloads[-1]["content"] == "Token streaming complete"
    assert payloads[-1]["accumulated"] == "".join(p["content"] for p in payloads[:-1])
    exported = await http.get(root + f"/api/v1/sessions/{sid}/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/plain")
    assert exported.text.startswith(f"# Session Export: {sid}\n\n")
    assert f"**Database:** {agent_env['MONGODB_DATABASE']}" in exported.text
    assert "## Message 1 - User\n\ntokens\n\n---" in exported.text
    assert "## Message 2 - Assistant" in exported.text


async def test_extension_and_settings_routes(
    http: httpx.AsyncClient, namespace: str, project: Any
) -> None:
    """Anyone who reaches the pod can change its tools and model (no config.yaml mounted
    here: the pod's own file is writable)."""
    await project(NAME)
    root = base(namespace)
    assert (await http.get(root + "/api/v1/extensions")).json() == {
        "extensions": [],
        "total_count": 0,
    }
    missing = await http.post(root + "/api/v1/extensions", json={"name": "x", "type": "stdio"})
    assert missing.status_code == 400
    assert missing.json()["message"] == "cmd is required for stdio extensions"
    created = await http.post(
        root + "/api/v1/extensions", json={"name": "Fetch", "type": "stdio", "cmd": "uvx"}
    )
    assert created.status_code == 201
    assert created.json() == {
        "message": "Extension created successfully",
        "name": "Fetch",
        "enabled": True,
    }
    enabled = await http.delete(root + "/api/v1/extensions/Fetch")
    assert enabled.status_code == 400 and enabled.json()["error"] == "Extension is enabled"
    toggled = await http.put(root + "/api/v1/extensions/Fetch/toggle", json={"enabled": False})
    assert toggled.status_code == 200
    assert (await http.delete(root + "/api/v1/extensions/Fetch")).status_code == 204
    assert (await http.delete(root + "/api/v1/extensions/Fetch")).status_code == 404

    listed = (await http.get(root + "/api/v1/settings")).json()
    assert listed["total_count"] == 7
    model = next(s for s in listed["settings"] if s["key"] == "GOOSE_MODEL")
    assert model["env_override"] == "simulated-agent" and model["restart_required"] is True
    overridden = await http.put(root + "/api/v1/settings/GOOSE_MODEL", json={"value": "other"})
    assert overridden.status_code == 400 and overridden.json()["error"] == "Setting overridden"
    invalid = await http.put(root + "/api/v1/settings/GOOSE_TEMPERATURE", json={"value": 5})
    assert invalid.status_code == 400
    assert invalid.json() == {"error": "Validation failed", "message": "Value must be at most 2"}
    updated = await http.put(root + "/api/v1/settings/GOOSE_TEMPERATURE", json={"value": 0.5})
    assert updated.status_code == 200 and updated.json()["value"] == 0.5
    assert (await http.get(root + "/api/v1/settings/GOOSE_TEMPERATURE")).json()["value"] == 0.5
    unknown = await http.get(root + "/api/v1/settings/NOPE")
    assert unknown.status_code == 404 and unknown.json()["error"] == "Setting not found"
    reset = await http.delete(root + "/api/v1/settings/GOOSE_TEMPERATURE")
    assert reset.json()["default_value"] == 0.7


async def test_database_failures_answer_as_the_real_server(
    http: httpx.AsyncClient, namespace: str, project: Any, sim: SimClusterThread
) -> None:
    """MongoDB going away after start: health 503, create 500 `{"session_id":"error"}`, a
    reply 200 with one `Database error` event; the agent keeps serving."""
    mongo = EmbeddedMongo(":memory:")
    url = await mongo.start()
    try:
        await project(NAME, env={"MONGODB_URL": url})
        root = base(namespace)
        sid = await new_session(http, root)
    finally:
        await mongo.stop()
    health = await http.get(root + "/api/v1/health")
    assert health.status_code == 503
    assert health.json()["status"] == "error" and health.json()["database_connected"] is False
    created = await http.post(root + "/api/v1/sessions")
    assert created.status_code == 500 and created.json() == {"session_id": "error"}
    events = [p for _, p in await chat(http, root, sid, "hello?")]
    assert events == [
        {
            "type": "error",
            "content": {
                "error": "Database error",
                "message": "Failed to query session from MongoDB",
            },
        }
    ]
