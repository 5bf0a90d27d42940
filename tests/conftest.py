"""Shared fixtures: a real MongoDB-compatible server over TCP and the console's ASGI app."""

from __future__ import annotations

import asyncio
import logging
import os
import runpy
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from nicegui import core
from nicegui.testing import User
from nicegui.testing.general import nicegui_reset_globals
from nicegui.testing.general_fixtures import get_path_to_main_file
from nicegui.testing.user_simulation import user_simulation

from gooseui.devcluster import AgentSettings, Delays, SimClusterThread
from gooseui.embedded import EmbeddedMongo
from gooseui.store import Document, ProjectStore, create_client

CONSOLE_ENV_PREFIXES = (
    "GOOSEUI_",
    "MONGO_",
    "KUBECONFIG",
    "ACR_IMAGE",
    "NAMESPACE_PREFIX",
    "INGRESS_BASE_DOMAIN",
    "PROJECTS_COLLECTION",
)


@pytest.fixture(scope="session")
async def mongo_uri() -> AsyncIterator[str]:
    """SecantusDB on a free loopback port, or GOOSEUI_TEST_MONGO_URI to test a real MongoDB."""
    if uri := os.environ.get("GOOSEUI_TEST_MONGO_URI"):
        yield uri
        return
    server = EmbeddedMongo(":memory:")
    yield await server.start()
    await server.stop()


FAST = Delays(
    schedule=0.02,
    pull=0.05,
    start=0.02,
    ready=0.05,
    terminate=0.05,
    crash=0.1,
    backoff=0.15,
    backoff_max=0.6,
    probe_period=0.2,
    namespace_finalize=0.05,
)
AGENT = AgentSettings(delta_delay=0.01, keepalive=0.3, tool_delay=0.02)
# Markers in the agent's secrets: no answer, log line or page of the console may show them
MONGO_PASSWORD_MARKER = "pw-MARKER-5f0c1e"
PROVIDER_KEY_MARKER = "sk-MARKER-9b7d2a"


def agent_mongo_url(mongo_uri: str) -> str:
    """The test MongoDB's URL carrying a marker, as an operator's carries a password.

    SecantusDB refuses credentials it has no users for, so the marker rides in `appName`:
    the agent logs and answers the whole URL, so it must never reach the console's output.
    """
    separator = "&" if "?" in mongo_uri else "/?"
    return f"{mongo_uri}{separator}appName={MONGO_PASSWORD_MARKER}"


def write_agent_env(path: Path, mongo_uri: str, **extra: str) -> Path:
    """A dotenv file with the agent's environment (GOOSEUI_GOOSE_ENV_FILE)."""
    values = {
        "MONGODB_URL": agent_mongo_url(mongo_uri),
        "GOOSE_PROVIDER": "simulated",
        "GOOSE_MODEL": "simulated-agent",
        "OPENAI_API_KEY": PROVIDER_KEY_MARKER,
        **extra,
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v is not None))
    return path


@pytest.fixture(scope="session")
def sim_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimClusterThread]:
    """One simulated cluster for the session, on its own loop, reached over HTTPS."""
    cluster = SimClusterThread(tmp_path_factory.mktemp("console-sim"), delays=FAST, agent=AGENT)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
async def kube(sim_cluster: SimClusterThread) -> AsyncIterator[k8s.ApiClient]:
    """An independent view of the cluster: kubernetes-asyncio on the simulator's kubeconfig."""
    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(
        config_file=str(sim_cluster.kubeconfig_path), client_configuration=configuration
    )
    async with k8s.ApiClient(configuration) as api:
        yield api


@pytest.fixture
def sim(sim_cluster: SimClusterThread) -> Iterator[SimClusterThread]:
    """The session's simulated cluster, with faults cleared after the test."""
    yield sim_cluster
    sim_cluster.clear_faults()
    sim_cluster.set_nodes_schedulable(True)
    sim_cluster.set_agent(**AGENT.__dict__)


@pytest.fixture
def console_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mongo_uri: str, sim: SimClusterThread
) -> dict[str, str]:
    """A clean environment for one console: its own database, data directory and namespaces.

    The console reaches the simulated cluster only through the kubeconfig it writes. HOME
    points at the test's directory so that no ~/.kube/config of the machine is picked up.
    """
    for name in list(os.environ):
        if name.startswith(CONSOLE_ENV_PREFIXES) and not name.startswith("GOOSEUI_TEST_"):
            monkeypatch.delenv(name)
    env = console_settings(tmp_path, mongo_uri, sim)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def console_settings(directory: Path, mongo_uri: str, sim: SimClusterThread) -> dict[str, str]:
    """The environment of a test's console (see `console_env`)."""
    return {
        "MONGO_URI": mongo_uri,
        "MONGO_DB": f"t_{uuid.uuid4().hex[:12]}",
        "GOOSEUI_DATA_DIR": str(directory / "data"),
        "HOME": str(directory),
        "KUBECONFIG": str(sim.kubeconfig_path),
        "NAMESPACE_PREFIX": f"t{uuid.uuid4().hex[:6]}-",
        "GOOSEUI_UNSCHEDULABLE_GRACE": "0",
        "GOOSEUI_ACTIVATION_TIMEOUT": "20",
        # passes after the start-up one only where a test asks: a test that arranges a state
        # by hand must not race a pass that repairs it
        "GOOSEUI_RECONCILE_INTERVAL": "0",
        "GOOSEUI_GOOSE_ENV_FILE": str(write_agent_env(directory / "agent.env", mongo_uri)),
    }


@asynccontextmanager
async def console(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Start the whole console (routes, middleware, lifespan) and talk to it over ASGI."""
    async with user_simulation(main_file=get_path_to_main_file(request)) as user:
        yield user.http_client


@asynccontextmanager
async def live_console(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The console served by uvicorn on a free loopback port, for tests that need streaming.

    httpx's ASGI transport collects a whole response before returning it, so server-sent
    events are tested over real HTTP.
    """
    with nicegui_reset_globals():
        os.environ["NICEGUI_USER_SIMULATION"] = "true"  # ui.run configures without serving
        try:
            runpy.run_path(str(get_path_to_main_file(request)), run_name="__main__")
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            server = uvicorn.Server(
                uvicorn.Config(
                    core.app, host="127.0.0.1", port=port, lifespan="on", log_level="warning"
                )
            )
            task = asyncio.create_task(server.serve())
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the console stopped while starting")
                await asyncio.sleep(0.01)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
                await task
        finally:
            os.environ.pop("NICEGUI_USER_SIMULATION", None)


@dataclass
class Replica:
    url: str
    process: asyncio.subprocess.Process
    log: Path


@asynccontextmanager
async def console_replica(directory: Path, **env: str) -> AsyncIterator[Replica]:
    """`python -m gooseui` in its own process (the environment of `console_env`, its own
    port and data directory); its log must hold no ERROR line or traceback, unless it was
    killed."""
    os.makedirs(directory, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # not under pytest, to NiceGUI's eyes: a console as an operator starts it; and only
    # the console settings given (those of `console_env`, or `env`)
    child = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NICEGUI_"))}
    if "MONGO_DB" in env:  # a whole set of settings: none of the caller's
        child = {
            k: v
            for k, v in child.items()
            if not k.startswith(CONSOLE_ENV_PREFIXES) or k.startswith("GOOSEUI_TEST_")
        }
    child |= {"GOOSEUI_HOST": "127.0.0.1", "GOOSEUI_PORT": str(port)}
    child |= {"GOOSEUI_DATA_DIR": str(directory / "data"), **env}
    log_path = directory / "console.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gooseui", env=child, stdout=log_file, stderr=log_file
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            for _ in range(600):
                if process.returncode is not None:
                    pytest.fail(f"the console stopped:\n{log_path.read_text()[-3000:]}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"the console did not get ready:\n{log_path.read_text()[-3000:]}")
        yield Replica(url, process, log_path)
    finally:
        killed = process.returncode is not None and process.returncode < 0
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
    log = log_path.read_text(errors="replace")
    if not killed:
        assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


@pytest.fixture
async def client(
    console_env: dict[str, str], request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a console started with `console_env`."""
    async with console(request) as http:
        yield http


@pytest.fixture
async def store(mongo_uri: str) -> AsyncIterator[ProjectStore]:
    mongo = create_client(mongo_uri)
    yield ProjectStore(mongo, f"t_{uuid.uuid4().hex[:12]}", "projects")
    await mongo.close()


def new_doc(
    user_id: str = "alice", project_id: str | None = None, name: str = "One", **extra: object
) -> Document:
    from gooseui.service import new_project_id
    from gooseui.store import name_key, now

    moment = now()
    return {
        "user_id": user_id,
        "project_id": project_id or new_project_id(),
        "name": name,
        "name_key": name_key(name),
        "status": "inactive",
        "created_at": moment,
        "updated_at": moment,
        **extra,
    }


@pytest.fixture
async def user(
    console_env: dict[str, str], caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> AsyncIterator[User]:
    """NiceGUI's simulated user, on a console whose environment is set before it starts."""
    async with user_simulation(main_file=get_path_to_main_file(request)) as simulated:
        yield simulated
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail(f"There were unexpected ERROR logs: {errors[0].getMessage()}", pytrace=False)


@pytest.fixture(scope="session")
def nicegui_chrome_options(nicegui_chrome_options: Any) -> Any:
    """NiceGUI's Chrome options, plus quiet networking: this machine reaches no outside host."""
    for flag in (
        "disable-background-networking",
        "disable-component-update",
        "disable-sync",
        "no-first-run",
        "disable-gpu",
        "window-size=1400,1000",
    ):
        nicegui_chrome_options.add_argument(flag)
    return nicegui_chrome_options
