"""Why an environment fails: the agent's log and the cluster's events, over REST, redacted.

Against the simulated cluster over HTTPS, as everything else: its agent logs its MongoDB URL
and provider key at start like the real one, its crash image leaves a previous container,
and its pull-error image leaves the kubelet's pull events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client as k8s

from gooseui.devcluster import SimClusterThread
from tests.conftest import MONGO_PASSWORD_MARKER, PROVIDER_KEY_MARKER, console, live_console
from tests.test_api import assert_error
from tests.test_lifecycle import fail_keeping_its_pod, new_project, pods, until, url

MARK = "\u2022" * 4
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ")


async def raw_log(kube: k8s.ApiClient, project: dict[str, Any], **options: Any) -> str:
    """The log as the API server serves it to anyone with a kubeconfig (not redacted)."""
    pod = (await pods(kube, project))[0]["metadata"]["name"]
    response = await k8s.CoreV1Api(kube).read_namespaced_pod_log(
        pod, project["namespace"], container="goose-api", _preload_content=False, **options
    )
    return (await response.read()).decode()


async def test_logs_of_an_active_project_show_its_start_without_its_secrets(
    client: httpx.AsyncClient, kube: k8s.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    project = await new_project(client, "Logs")
    assert (await client.post(url(project, "activate"))).status_code == 200
    raw = await raw_log(kube, project)
    assert MONGO_PASSWORD_MARKER in raw and PROVIDER_KEY_MARKER in raw  # what there is to hide

    caplog.set_level(logging.INFO, logger="gooseui.k8s")
    response = await client.get(url(project, "logs"), headers={"X-Request-ID": "logs-req-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"pod", "previous", "restarts", "lines"}
    assert body["pod"].startswith(project["deployment"] + "-")
    assert body["previous"] is False and body["restarts"] == 0
    text = "\n".join(body["lines"])
    assert "Goose API Server Ready" in text
    assert MONGO_PASSWORD_MARKER not in text and PROVIDER_KEY_MARKER not in text
    assert any(line.endswith(f"OPENAI_API_KEY: {MARK}") for line in body["lines"]), text
    database = next(line for line in body["lines"] if "📊 Database:" in line)
    assert f"/{MARK})" in database and "mongodb://127.0.0.1:" in database  # where, not how
    assert any(line.endswith("GOOSE_MODEL: simulated-agent") for line in body["lines"])
    # the raw log's lines, in order, each redacted
    assert len(body["lines"]) == len(raw.rstrip("\n").split("\n"))
    # one logged Kubernetes call, with the request's id
    calls = [
        r
        for r in caplog.records
        if r.getMessage() == "k8s.call" and str(r.fields.get("path", "")).endswith("/log")  # type: ignore[attr-defined]
    ]
    assert len(calls) == 1 and calls[0].request_id == "logs-req-1"  # type: ignore[attr-defined]
    assert calls[0].fields["status"] == 200  # type: ignore[attr-defined]

    tail = (await client.get(url(project, "logs"), params={"tail": 2})).json()["lines"]
    assert tail == body["lines"][-2:]
    stamped = (await client.get(url(project, "logs"), params={"timestamps": "true"})).json()
    assert all(STAMP.match(line) for line in stamped["lines"]), stamped["lines"][:3]
    assert MONGO_PASSWORD_MARKER not in json.dumps(stamped)

    no_previous = await client.get(url(project, "logs"), params={"previous": "true"})
    assert "has not restarted" in assert_error(no_previous, 409, "NoPreviousContainer")["detail"]


async def test_logs_errors(client: httpx.AsyncClient) -> None:
    project = await new_project(client, "Never activated")
    no_pod = assert_error(await client.get(url(project, "logs")), 409, "NoPod")
    assert no_pod["detail"].startswith("Project Never activated has no running pod; activate it")
    for tail in ("0", "5001", "-1", "many"):
        response = await client.get(url(project, "logs"), params={"tail": tail})
        assert "tail" in assert_error(response, 422, "InvalidRequest")["detail"]
    both = await client.get(url(project, "logs"), params={"follow": "true", "previous": "true"})
    assert_error(both, 409, "NoPod")  # an error before any stream, as JSON
    assert_error(await client.get("/users/alice/projects/abcdefgh/logs"), 404, "ProjectNotFound")
    assert_error(await client.get("/users/nobody/projects/abcdefgh/logs"), 404, "UserNotFound")
    for path in ("/users/alice/projects/abcdefgh", "/users/nobody/projects/abcdefgh"):
        assert (await client.get(f"{path}/cluster-events")).status_code == 404
    # a project never activated has no objects, so no events: an empty list, not an error
    events = await client.get(url(project, "cluster-events"))
    assert events.status_code == 200 and events.json() == []
    bad_limit = await client.get(url(project, "cluster-events"), params={"limit": 0})
    assert_error(bad_limit, 422, "InvalidRequest")


async def test_previous_container_after_a_crash(
    console_env: dict[str, str],
    kube: k8s.ApiClient,
    sim: SimClusterThread,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """A crash-looping agent (its scale-down refused, so its pod stays): the previous
    container's lines, and the back-off events."""
    monkeypatch.setenv("ACR_IMAGE", "goose-api:crash")
    async with console(request) as client:
        project = await new_project(client, "Crashes")
        stored = await fail_keeping_its_pod(client, kube, sim, project)
        assert stored["status"] == "failed" and stored["status_reason"] == "CrashLoop", stored

        async def restarted() -> bool:
            found = await pods(kube, project)
            statuses = found[0]["status"].get("containerStatuses") or [] if found else []
            return bool(statuses) and statuses[0].get("restartCount", 0) >= 1

        assert await until(restarted, 10)
        response = await client.get(url(project, "logs"), params={"previous": "true"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["previous"] is True and body["restarts"] >= 1
        assert body["lines"] == ["simulated crash: exit 1"]
        assert body["pod"] == (await pods(kube, project))[0]["metadata"]["name"]
        # followed, the previous container's lines come and the stream ends (it writes no more)
        streamed = await client.get(
            url(project, "logs"), params={"follow": "true", "previous": "true"}
        )
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert streamed.text == 'data: {"line": "simulated crash: exit 1"}\n\n'

        events = (await client.get(url(project, "cluster-events"))).json()
        backoff = [e for e in events if e["reason"] == "BackOff"]
        assert backoff and backoff[-1]["type"] == "Warning", events
        assert backoff[-1]["object"] == f"Pod/{body['pod']}"
        assert "Back-off restarting failed container goose-api" in backoff[-1]["message"]


async def test_logs_of_a_container_that_never_started(
    console_env: dict[str, str],
    kube: k8s.ApiClient,
    sim: SimClusterThread,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("ACR_IMAGE", "goose-api:pull-error")
    async with console(request) as client:
        project = await new_project(client, "Unpulled")
        stored = await fail_keeping_its_pod(client, kube, sim, project)
        assert stored["status_reason"] == "ImagePullFailed", stored
        body = assert_error(await client.get(url(project, "logs")), 409, "ContainerNotStarted")
        assert "is waiting to start" in body["detail"] and "cluster events" in body["detail"]


async def test_cluster_events_of_a_bad_image_are_its_own(
    console_env: dict[str, str],
    kube: k8s.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("ACR_IMAGE", "goose-api:pull-error")
    async with console(request) as client:
        mine = await new_project(client, "Mine")
        other = await new_project(client, "Other")
        for project in (mine, other):
            response = await client.post(url(project, "activate"))
            assert response.json()["code"] == "ImagePullFailed", response.text
        # the namespace has both projects' events
        listing = await k8s.CoreV1Api(kube).list_namespaced_event(
            mine["namespace"], _preload_content=False
        )
        names = {e["involvedObject"]["name"] for e in json.loads(await listing.read())["items"]}
        assert any(n.startswith(other["deployment"]) for n in names), names

        response = await client.get(url(mine, "cluster-events"))
        assert response.status_code == 200, response.text
        events = response.json()
        assert events and all(
            set(e) == {"at", "type", "reason", "object", "message", "count"} for e in events
        )
        objects = {e["object"] for e in events}
        assert all(o.split("/", 1)[1].startswith(mine["deployment"]) for o in objects), objects
        kinds = {o.split("/", 1)[0] for o in objects}
        assert {"Deployment", "ReplicaSet", "Pod"} <= kinds, objects
        failed = [e for e in events if e["type"] == "Warning" and e["reason"] == "Failed"]
        assert any('Failed to pull image "goose-api:pull-error"' in e["message"] for e in failed)
        assert any(e["message"] == "Error: ErrImagePull" for e in failed), failed
        times = [e["at"] for e in events]
        assert times == sorted(times)  # oldest first
        # the pod is gone (scaled back to 0), its events are not
        assert not await pods(kube, mine)
        assert (await client.get(url(mine, "logs"))).json()["code"] == "NoPod"
        latest = (await client.get(url(mine, "cluster-events"), params={"limit": 2})).json()
        assert latest == events[-2:]


async def test_follow_streams_lines_as_they_are_written(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    from nicegui import app

    async with live_console(request) as base, httpx.AsyncClient(base_url=base) as client:
        project = await new_project(client, "Followed")
        assert (await client.post(url(project, "activate"))).status_code == 200
        kube = app.state.runtime.kube
        assert kube.streams_open == 0
        seen: list[str] = []
        tail_read = asyncio.Event()
        found = asyncio.Event()

        async def listen() -> None:
            params = {"follow": "true", "tail": "3"}
            async with client.stream("GET", url(project, "logs"), params=params) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    seen.append(json.loads(line[6:])["line"])
                    if len(seen) == 3:
                        tail_read.set()
                    if "Creating new session" in seen[-1]:
                        found.set()
                        await asyncio.sleep(30)  # hold the stream open until cancelled

        listener = asyncio.create_task(listen())
        try:
            await asyncio.wait_for(tail_read.wait(), 10)
            assert kube.streams_open == 1
            assert not any("Creating new session" in line for line in seen)
            # a line the agent writes after the request started
            created = await client.post(url(project, "sessions"))
            assert created.status_code == 201, created.text
            await asyncio.wait_for(found.wait(), 10)
            assert MONGO_PASSWORD_MARKER not in "".join(seen)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

        async def closed() -> bool:
            return kube.streams_open == 0

        assert await until(closed, 5), "the upstream log stream outlived its caller"

        # errors come before the stream, as JSON
        stopped = await client.post(url(project, "deactivate"))
        assert stopped.status_code == 200
        response = await client.get(url(project, "logs"), params={"follow": "true"})
        assert_error(response, 409, "NoPod")


async def test_no_cluster_configured(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.delenv("KUBECONFIG")
    async with console(request) as client:
        project = await new_project(client, "Nowhere")
        for action in ("logs", "cluster-events"):
            body = assert_error(await client.get(url(project, action)), 503, "ClusterUnavailable")
            assert "KUBECONFIG" in body["detail"]


async def test_openapi_documents_the_diagnostics(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    logs = document["paths"]["/users/{user_id}/projects/{project_id}/logs"]["get"]
    assert {"200", "404", "409", "422", "500", "502", "503"} <= set(logs["responses"])
    content = logs["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/LogsOut"}
    data = content["text/event-stream"]["schema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/LogLine"}
    tail = next(p for p in logs["parameters"] if p["name"] == "tail")
    assert tail["schema"]["minimum"] == 1 and tail["schema"]["maximum"] == 5000
    events = document["paths"]["/users/{user_id}/projects/{project_id}/cluster-events"]["get"]
    assert {"200", "404", "502", "503"} <= set(events["responses"])
    schemas = document["components"]["schemas"]
    assert set(schemas["ClusterEventOut"]["properties"]) == {
        "at",
        "type",
        "reason",
        "object",
        "message",
        "count",
    }


async def test_a_broken_agent_environment_still_leaves_its_secrets_masked(
    client: httpx.AsyncClient,
    console_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log is needed most when the environment's source is broken: the values seen before
    stay masked, and the source's problem does not hide the log."""
    import os

    from gooseui import diagnostics

    project = await new_project(client, "Broken source")
    assert (await client.post(url(project, "activate"))).status_code == 200
    monkeypatch.setattr(diagnostics, "SECRETS_SECONDS", 0.0)  # read at every call
    monkeypatch.setattr(diagnostics, "SECRETS_RETRY_SECONDS", 0.0)
    assert (await client.get(url(project, "logs"))).status_code == 200  # values read
    await asyncio.to_thread(os.unlink, console_env["GOOSEUI_GOOSE_ENV_FILE"])
    response = await client.get(url(project, "logs"))
    assert response.status_code == 200, response.text
    text = "\n".join(response.json()["lines"])
    assert "Goose API Server Ready" in text
    assert MONGO_PASSWORD_MARKER not in text and PROVIDER_KEY_MARKER not in text
    assert any(r.getMessage() == "diagnostics.secrets_unavailable" for r in caplog.records)
