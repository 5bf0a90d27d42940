"""The lifecycle on a real cluster (kind, k3d, AKS): run with GOOSEUI_TEST_KUBECONFIG set.

These tests create a namespace `gt<random>-alice` and a Deployment of ACR_IMAGE (default
`goose-api:latest`, which the cluster must be able to pull), and delete them again.
"""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tests.conftest import console

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not os.environ.get("GOOSEUI_TEST_KUBECONFIG"),
        reason="GOOSEUI_TEST_KUBECONFIG does not point at a real cluster",
    ),
]


async def test_real_cluster_lifecycle(
    console_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("KUBECONFIG", os.environ["GOOSEUI_TEST_KUBECONFIG"])
    monkeypatch.setenv("NAMESPACE_PREFIX", f"gt{uuid.uuid4().hex[:6]}-")
    monkeypatch.setenv("GOOSEUI_ACTIVATION_TIMEOUT", os.environ.get("GOOSEUI_TEST_TIMEOUT", "300"))
    if image := os.environ.get("GOOSEUI_TEST_IMAGE"):
        monkeypatch.setenv("ACR_IMAGE", image)
    async with console(request) as client:
        assert (await client.get("/readyz")).status_code == 200
        project = (await client.post("/users/alice/projects", json={"name": "real"})).json()
        path = f"/users/alice/projects/{project['project_id']}"
        try:
            response = await client.post(f"{path}/activate", timeout=httpx.Timeout(400))
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "active"
            response = await client.post(f"{path}/deactivate", timeout=httpx.Timeout(120))
            assert response.json()["status"] == "inactive"
        finally:
            assert (await client.delete(path, timeout=httpx.Timeout(180))).status_code == 204
