"""A project's own model: it reaches its pod's environment (and only its pod's), survives a
scale, and a change takes effect at the next activation."""

from __future__ import annotations

from typing import Any

import httpx
from kubernetes_asyncio import client as k8s

from tests.test_lifecycle import deployment, url


def agent_env(dep: dict[str, Any]) -> dict[str, str]:
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


async def test_a_projects_model_reaches_only_its_pod(
    client: httpx.AsyncClient, kube: k8s.ApiClient
) -> None:
    own = await client.post("/users/alice/projects", json={"name": "Own", "model": "gpt-test-1"})
    assert own.status_code == 201 and own.json()["model"] == "gpt-test-1"
    plain = (await client.post("/users/alice/projects", json={"name": "Plain"})).json()
    own = own.json()
    for project in (own, plain):
        assert (await client.post(url(project, "activate"))).status_code == 200
    own_dep, plain_dep = await deployment(kube, own), await deployment(kube, plain)
    assert agent_env(own_dep)["GOOSE_MODEL"] == "gpt-test-1"
    assert "GOOSE_MODEL" not in agent_env(plain_dep)  # the agent environment's, from envFrom
    logs = (await client.get(url(own, "logs"), params={"tail": 2000})).json()["lines"]
    assert any("model: gpt-test-1" in line for line in logs), logs[:10]
    plain_logs = (await client.get(url(plain, "logs"), params={"tail": 2000})).json()["lines"]
    assert not any("gpt-test-1" in line for line in plain_logs)
    # a scale keeps it: the pod template is what it was (no rollout)
    template = own_dep["spec"]["template"]
    assert (await client.post(url(own, "deactivate"))).status_code == 200
    assert (await deployment(kube, own))["spec"]["template"] == template
    # a change: from the next activation on
    changed = await client.patch(url(plain, ""), json={"model": "claude-test-2"})
    assert changed.status_code == 200 and changed.json()["model"] == "claude-test-2"
    assert "GOOSE_MODEL" not in agent_env(await deployment(kube, plain))
    assert (await client.post(url(plain, "deactivate"))).status_code == 200
    assert (await client.post(url(plain, "activate"))).status_code == 200
    assert agent_env(await deployment(kube, plain))["GOOSE_MODEL"] == "claude-test-2"
    # null: back to the agent environment's model
    cleared = await client.patch(url(plain, ""), json={"model": None})
    assert cleared.status_code == 200 and cleared.json()["model"] is None


async def test_a_model_name_is_checked(client: httpx.AsyncClient) -> None:
    # `4`, `true`, `null`: the agent reads an environment value as JSON first, and would
    # not start with a number for its model
    for bad in ("", "two words", "-dash-first", "x" * 200, "a\nb", "4", "1.5", "true", "null"):
        response = await client.post("/users/alice/projects", json={"name": "M", "model": bad})
        assert response.status_code == 422, (bad, response.text)
    assert (await client.get("/users/alice/projects")).json() == []


async def test_a_model_the_console_refuses_is_one_the_agent_cannot_start_with(
    client: httpx.AsyncClient, console_env: dict[str, str]
) -> None:
    """Why `4` is refused: the agent (real, and simulated alike) reads GOOSE_MODEL as JSON
    first, gets a number, and exits. Written past the console's check, it crash-loops."""
    from gooseui.store import create_client

    project = (await client.post("/users/alice/projects", json={"name": "Numbered"})).json()
    mongo = create_client(console_env["MONGO_URI"])
    await mongo[console_env["MONGO_DB"]]["projects"].update_one(
        {"project_id": project["project_id"]}, {"$set": {"model": "4"}}
    )
    await mongo.close()
    response = await client.post(url(project, "activate"))
    assert response.status_code == 502 and response.json()["code"] == "CrashLoop", response.text
    assert "expected a string" in response.json()["detail"]
