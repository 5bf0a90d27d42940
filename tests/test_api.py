"""The REST face, through the whole ASGI app, against a real MongoDB-compatible server."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from gooseui.devcluster import SimClusterThread

PROJECT_KEYS = {
    "user_id",
    "project_id",
    "name",
    "namespace",
    "deployment",
    "service",
    "ingress",
    "status",
    "status_reason",
    "status_message",
    "endpoint",
    "goose_session_id",
    "created_at",
    "updated_at",
    "last_activated_at",
    # issue 13: the idle clock, its exemption, the project's own model
    "last_activity_at",
    "keep_running",
    "model",
}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"detail", "code"} and body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def create(client: httpx.AsyncClient, name: str, user: str = "alice") -> dict:
    response = await client.post(f"/users/{user}/projects", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def test_health_and_users(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["mongodb"]["ok"] is True
    users = (await client.get("/users")).json()
    assert users == [
        {"id": "alice", "name": "Alice Anders"},
        {"id": "bob", "name": "Bob Brenner"},
        {"id": "carol", "name": "Carol Chen"},
    ]


async def test_create_get_list(client: httpx.AsyncClient, console_env: dict[str, str]) -> None:
    project = await create(client, "  Market analysis  ")
    assert set(project) == PROJECT_KEYS
    pid = project["project_id"]
    assert len(pid) == 8 and pid.isalnum() and pid == pid.lower()
    assert project["name"] == "Market analysis"
    assert project["status"] == "inactive"
    assert project["namespace"] == console_env["NAMESPACE_PREFIX"] + "alice"
    assert project["deployment"] == project["service"] == f"proj-{pid}-api"
    assert project["created_at"].endswith("Z") and project["last_activated_at"] is None
    assert (await client.get(f"/users/alice/projects/{pid}")).json() == project
    second = await create(client, "Second")
    listed = (await client.get("/users/alice/projects")).json()
    assert [p["project_id"] for p in listed] == [second["project_id"], pid]
    assert (await client.get("/users/bob/projects")).json() == []


async def test_rename(client: httpx.AsyncClient) -> None:
    project = await create(client, "Alpha")
    await create(client, "Beta")
    url = f"/users/alice/projects/{project['project_id']}"
    renamed = await client.put(url, json={"name": "Gamma"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Gamma"
    assert (await client.put(url, json={"name": "Gamma"})).status_code == 200  # same name again
    assert (await client.put(url, json={"name": "GAMMA"})).json()["name"] == "GAMMA"
    assert_error(await client.put(url, json={"name": "beta"}), 409, "DuplicateName")
    assert_error(await client.put(url, json={"name": " "}), 422, "InvalidName")
    assert_error(
        await client.put("/users/alice/projects/nope1234", json={"name": "X"}),
        404,
        "ProjectNotFound",
    )
    assert (await client.get(url)).json()["name"] == "GAMMA"


async def test_delete(client: httpx.AsyncClient) -> None:
    project = await create(client, "Doomed")
    url = f"/users/alice/projects/{project['project_id']}"
    response = await client.delete(url)
    assert response.status_code == 204 and response.content == b""
    assert_error(await client.get(url), 404, "ProjectNotFound")
    assert_error(await client.delete(url), 404, "ProjectNotFound")
    # the name is free again
    await create(client, "Doomed")


async def test_delete_in_transition_is_refused(
    client: httpx.AsyncClient, sim: SimClusterThread
) -> None:
    project = await create(client, "Busy")
    sim.set_slow_readiness(3.0)  # keep the activation running while we try to delete
    url = f"/users/alice/projects/{project['project_id']}"
    started = await client.post(f"{url}/activate", params={"wait": "false"})
    assert started.status_code == 202
    body = assert_error(await client.delete(url), 409, "InTransition")
    assert "activating" in body["detail"]
    assert (await client.get(url)).json()["status"] == "activating"
    renamed = await client.put(url, json={"name": "Busy but renamed"})
    assert renamed.status_code == 200  # metadata may change during a transition
    sim.set_slow_readiness(0.0)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/users/zed/projects", None, 404, "UserNotFound"),
        ("POST", "/users/zed/projects", {"name": "x"}, 404, "UserNotFound"),
        ("GET", "/users/zed/projects/abcdefgh", None, 404, "UserNotFound"),
        ("GET", "/users/alice/projects/abcdefgh", None, 404, "ProjectNotFound"),
        ("GET", "/users/alice/projects/NOT..A..LABEL", None, 404, "ProjectNotFound"),
        ("PUT", "/users/alice/projects/abcdefgh", {"name": "x"}, 404, "ProjectNotFound"),
        ("DELETE", "/users/alice/projects/abcdefgh", None, 404, "ProjectNotFound"),
        ("POST", "/users/alice/projects", {"name": ""}, 422, "InvalidName"),
        ("POST", "/users/alice/projects", {"name": "   "}, 422, "InvalidName"),
        ("POST", "/users/alice/projects", {"name": "x" * 101}, 422, "InvalidName"),
        ("POST", "/users/alice/projects", {"name": "a\nb"}, 422, "InvalidName"),
        ("POST", "/users/alice/projects", {}, 422, "InvalidRequest"),
        ("POST", "/users/alice/projects", {"name": 5}, 422, "InvalidRequest"),
        ("POST", "/users/alice/projects", "not json", 400, "InvalidBody"),
        ("PATCH", "/users/alice/projects", None, 405, "MethodNotAllowed"),
    ],
)
async def test_error_rows(
    client: httpx.AsyncClient, method: str, path: str, body: object, status: int, code: str
) -> None:
    before = (await client.get("/users/alice/projects")).json()
    if isinstance(body, str):
        response = await client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    else:
        response = await client.request(method, path, json=body)
    assert_error(response, status, code)
    assert (await client.get("/users/alice/projects")).json() == before  # nothing changed


async def test_name_limits(client: httpx.AsyncClient) -> None:
    assert (await create(client, "x" * 100))["name"] == "x" * 100
    assert (await create(client, "Ünïcødé 项目 🪿"))["name"] == "Ünïcødé 项目 🪿"


async def test_duplicate_names_ignore_case_and_spaces(client: httpx.AsyncClient) -> None:
    await create(client, "Research")
    body = assert_error(
        await client.post("/users/alice/projects", json={"name": " RESEARCH "}),
        409,
        "DuplicateName",
    )
    assert "RESEARCH" in body["detail"]
    await create(client, "Research", user="bob")  # unique per user only


async def test_concurrent_creates_of_one_name(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *[client.post("/users/alice/projects", json={"name": "Race"}) for _ in range(20)]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19
    assert all(r.json()["code"] == "DuplicateName" for r in responses if r.status_code == 409)
    listed = (await client.get("/users/alice/projects")).json()
    assert [p["name"] for p in listed] == ["Race"]


async def test_request_id_is_returned_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = await client.post(
        "/users/alice/projects", json={"name": "Traced"}, headers={"X-Request-ID": "trace-123"}
    )
    assert response.headers["x-request-id"] == "trace-123"
    writes = [r for r in caplog.records if r.getMessage() == "mongo.write"]
    assert writes and all(r.request_id == "trace-123" for r in writes)
    assert writes[0].fields["op"] == "insert"
    generated = (await client.get("/healthz")).headers["x-request-id"]
    assert len(generated) == 16
    bad = await client.get("/healthz", headers={"X-Request-ID": "has spaces\tand tabs"})
    assert bad.headers["x-request-id"] != "has spaces\tand tabs"


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/users",
        "/users/{user_id}/projects",
        "/users/{user_id}/projects/{project_id}",
        "/healthz",
        "/readyz",
    } <= set(paths)
    assert (await client.get("/docs")).status_code == 200


async def test_pages_sit_beside_the_rest_routes(client: httpx.AsyncClient) -> None:
    """`/` sends a browser to a user's page under /ui/; /users/... stays JSON."""
    project = await create(client, "Visible")
    root = await client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/ui/users/alice"
    page = await client.get("/ui/users/alice")
    assert page.status_code == 200 and "gooseui" in page.text
    assert page.headers["content-type"].startswith("text/html")
    deep = await client.get(f"/ui/users/alice/projects/{project['project_id']}")
    assert deep.status_code == 200 and deep.headers["content-type"].startswith("text/html")
    rest = await client.get("/users/alice/projects")
    assert rest.headers["content-type"].startswith("application/json")


async def test_names_are_one_spelling(client: httpx.AsyncClient) -> None:
    """`café` precomposed and decomposed are one name, stored in NFC (issue 10)."""
    composed, decomposed = "Caf\u00e9", "Cafe\u0301"
    first = await client.post("/users/alice/projects", json={"name": decomposed})
    assert first.status_code == 201, first.text
    assert first.json()["name"] == composed
    again = await client.post("/users/alice/projects", json={"name": composed.upper()})
    assert again.status_code == 409 and again.json()["code"] == "DuplicateName"


async def test_lone_surrogates_are_refused(client: httpx.AsyncClient) -> None:
    body = b'{"name": "a\\ud800b"}'
    headers = {"content-type": "application/json"}
    response = await client.post("/users/alice/projects", content=body, headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "InvalidName"
    assert (await client.get("/users/alice/projects")).json() == []
    project = (await client.post("/users/alice/projects", json={"name": "Ok"})).json()
    message = b'{"message": "hi \\udfff there"}'
    response = await client.post(
        f"/users/alice/projects/{project['project_id']}/messages", content=message, headers=headers
    )
    assert response.status_code == 422 and response.json()["code"] == "InvalidMessage"


async def test_bodies_over_the_limit_are_refused_unread(client: httpx.AsyncClient) -> None:
    """413 BodyTooLarge, with the request's id, for a declared and for a chunked body."""
    big = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    headers = {"content-type": "application/json", "x-request-id": "big-1"}
    declared = await client.post("/users/alice/projects", content=big, headers=headers)
    assert declared.status_code == 413 and declared.json()["code"] == "BodyTooLarge"
    assert declared.headers["x-request-id"] == "big-1"

    async def chunked():
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = await client.post("/users/alice/projects", content=chunked(), headers=headers)
    assert streamed.status_code == 413 and streamed.json()["code"] == "BodyTooLarge"
    assert (await client.get("/users/alice/projects")).json() == []
    # a body within the limit still works
    created = await client.post("/users/alice/projects", json={"name": "Small"})
    assert created.status_code == 201


async def test_control_characters_never_reach_a_log_line_raw(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    import re

    from gooseui.logs import ConsoleFormatter, JsonFormatter

    caplog.set_level(logging.INFO)
    response = await client.get("/users/alice/projects/%00%1b%5b2J%7f%c2%85x")
    assert response.status_code == 404
    records = [r for r in caplog.records if r.getMessage() == "http.request"]
    assert records and "\x1b" in records[-1].fields["path"]  # what the client sent
    raw = re.compile(r"[\x00-\x1f\x7f-\x9f]")
    for formatter in (ConsoleFormatter(), JsonFormatter()):
        assert not raw.search(formatter.format(records[-1]))


async def test_no_redirect_is_built_from_the_host_header(client: httpx.AsyncClient) -> None:
    for path in ("/users/alice/projects/", "/users/alice/projects/%2e%2e%2f"):
        response = await client.get(path, headers={"host": "evil.example"})
        assert response.status_code == 404, (path, response.status_code)
        assert "location" not in response.headers
        assert response.json()["code"] == "NotFound"


@pytest.mark.parametrize("session_id", [".", "..", "a/b", "a%2fb", "..%2f", "x.y"])
async def test_session_ids_are_tokens(client: httpx.AsyncClient, session_id: str) -> None:
    project = (await client.post("/users/alice/projects", json={"name": "S"})).json()
    response = await client.post(
        f"/users/alice/projects/{project['project_id']}/messages",
        json={"message": "hi", "session_id": session_id},
    )
    assert response.status_code == 422 and response.json()["code"] == "InvalidRequest"


async def test_openapi_errors_are_the_bodies_the_server_sends(client: httpx.AsyncClient) -> None:
    """422s are `ErrorBody` as answered, and routes with a body document 413 (issue 10)."""
    document = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(document)
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == error, (method, path, status)
            if "requestBody" in operation:
                assert "413" in operation["responses"], (method, path)
    # and the server does answer a 422 that way
    bad = await client.post("/users/alice/projects", json={"name": 5})
    assert bad.status_code == 422 and set(bad.json()) == {"detail", "code"}


async def test_options_and_405_name_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """`Allow` lists what the path supports, not just the first route that matched it."""
    options = await client.options("/users/alice/projects")
    assert options.status_code == 204
    assert options.headers["allow"] == "GET, OPTIONS, POST"
    put = await client.put("/users/alice/projects/abcdefgh/messages", json={"message": "x"})
    body = assert_error(put, 405, "MethodNotAllowed")
    assert put.headers["allow"] == "GET, OPTIONS, POST"
    assert "PUT" in body["detail"] and "x-request-id" in put.headers
    item = await client.options("/users/alice/projects/abcdefgh")
    assert item.headers["allow"] == "DELETE, GET, OPTIONS, PATCH, PUT"
    messages = await client.options("/users/alice/projects/abcdefgh/messages")
    assert messages.headers["allow"] == "GET, OPTIONS, POST"
    assert (await client.get("/users/alice/projects")).json() == []


@pytest.mark.parametrize(
    "body",
    [b'{"name": ', b"\xff\xfe{}", b'{"name": "x"', b"\x00"],
    ids=["cut", "utf16", "open", "nul"],
)
async def test_undecodable_bodies_are_400(client: httpx.AsyncClient, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    response = await client.post("/users/alice/projects", content=body, headers=headers)
    assert_error(response, 400, "InvalidBody")
    assert (await client.get("/users/alice/projects")).json() == []
    # a body of the wrong shape is still 422
    wrong = await client.post("/users/alice/projects", json=["name"])
    assert_error(wrong, 422, "InvalidRequest")


async def test_a_500_carries_the_request_id(
    client: httpx.AsyncClient, console_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A record the console cannot read (written by hand, say) is a 500 with an id to grep."""
    from gooseui.store import create_client

    from .conftest import new_doc

    mongo = create_client(console_env["MONGO_URI"])
    try:
        doc = new_doc(project_id="corrupt1", status="no-such-status")
        await mongo[console_env["MONGO_DB"]]["projects"].insert_one(doc)
    finally:
        await mongo.close()
    caplog.set_level(logging.INFO)
    response = await client.get("/users/alice/projects/corrupt1", headers={"x-request-id": "r500"})
    assert_error(response, 500, "InternalError")
    assert response.headers["x-request-id"] == "r500"
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "r500"]
    assert any(r.getMessage() == "unexpected error" for r in logged), logged


async def test_openapi_publishes_the_rules_and_the_streams(client: httpx.AsyncClient) -> None:
    """Field rules, 400/500/503, and event streams documented as `text/event-stream` events."""
    import re

    from gooseui import textrules

    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    name = schemas["NameIn"]["properties"]["name"]
    assert name["pattern"] == textrules.name_pattern() and name["minLength"] == 1
    message = schemas["MessageIn"]["properties"]["message"]
    assert message["maxLength"] == textrules.MAX_MESSAGE
    assert re.search(message["pattern"], " x ") and not re.search(message["pattern"], " \t\n")
    create = document["paths"]["/users/{user_id}/projects"]["post"]["responses"]
    assert {"400", "404", "409", "413", "422", "500", "503"} <= set(create)
    for path, model in [
        ("/users/{user_id}/projects/{project_id}/events", "ProgressEvent"),
        ("/users/{user_id}/projects/{project_id}/messages", "ChatEvent"),
    ]:
        operation = document["paths"][path]["post" if model == "ChatEvent" else "get"]
        content = operation["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"], path
        data = content["text/event-stream"]["schema"]["properties"]["data"]
        assert data["contentSchema"] == {"$ref": f"#/components/schemas/{model}"}
        assert model in schemas
    assert set(schemas["ProgressEvent"]["properties"]) == {
        "user_id",
        "project_id",
        "status",
        "step",
        "message",
        "reason",
        "at",
    }
