"""What the benchmarks share: a free port, percentiles, and a console in its own process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def database() -> Iterator[str]:
    """A throwaway embedded MongoDB-compatible server for the console and its agents."""
    import asyncio

    from gooseui.embedded import EmbeddedMongo

    server = EmbeddedMongo(":memory:")
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete(server.start())
    finally:
        loop.run_until_complete(server.stop())
        loop.close()


def agent_env(path: Path, mongo_uri: str) -> Path:
    """The agent's environment as a dotenv file (GOOSEUI_GOOSE_ENV_FILE)."""
    path.write_text(
        f"MONGODB_URL={mongo_uri}\nGOOSE_PROVIDER=simulated\nGOOSE_MODEL=simulated-agent\n"
    )
    return path


def _ready(response: httpx.Response) -> bool:
    return response.status_code == 200


def mongodb_ready(response: httpx.Response) -> bool:
    """Ready as far as a bench without a cluster goes: MongoDB answers."""
    return bool(response.json()["checks"]["mongodb"]["ok"])


@contextmanager
def console(
    data_dir: Path,
    *,
    log: Path | None = None,
    ready: Callable[[httpx.Response], bool] = _ready,
    **env: str,
) -> Iterator[str]:
    """`gooseui` in a child process on a free loopback port; yields its base URL once ready."""
    with console_process(data_dir, log=log, ready=ready, **env) as (base, _):
        yield base


@contextmanager
def console_process(
    data_dir: Path,
    *,
    log: Path | None = None,
    ready: Callable[[httpx.Response], bool] = _ready,
    python: str = sys.executable,
    cwd: Path | None = None,
    **env: str,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`gooseui` in a child process on a free loopback port: its base URL and process.

    `env` adds environment variables (e.g. KUBECONFIG); the caller's GOOSEUI_/MONGO_ ones
    are dropped so that the bench measures defaults. `python` may be another checkout's
    interpreter (a baseline), run in that checkout (`cwd`: `-m` imports from there first).
    """
    if "KUBECONFIG" in env and "GOOSEUI_GOOSE_ENV_FILE" not in env:
        # a console that activates needs an environment for its agents, with a database of
        # their own: SecantusDB answers one operation at a time, and the agents' session
        # writes would otherwise queue the console's reads behind them (the console keeps
        # its embedded database)
        with database() as agents:
            data_dir.mkdir(parents=True, exist_ok=True)
            env_file = agent_env(data_dir / "agent.env", agents)
            with console_process(
                data_dir,
                log=log,
                ready=ready,
                python=python,
                cwd=cwd,
                GOOSEUI_GOOSE_ENV_FILE=str(env_file),
                **env,
            ) as running:
                yield running
        return
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOSEUI_", "MONGO_"))}
    child_env.update(
        GOOSEUI_DATA_DIR=str(data_dir), GOOSEUI_PORT=str(port), GOOSEUI_LOG_FORMAT="json", **env
    )
    out = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [python, "-m", "gooseui"], env=child_env, stdout=out, stderr=out, cwd=cwd
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if ready(httpx.get(f"{base}/readyz", timeout=5)):
                    break
            except (httpx.TransportError, ValueError, KeyError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the console did not become ready")
            time.sleep(0.02)
        yield base, process
    finally:
        process.terminate()
        process.wait(20)
        if log:
            out.close()  # type: ignore[union-attr]


def browser() -> Any:
    """Headless chromium at 1400x1000, quiet on the network (the page benches share it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "headless",
        "no-sandbox",
        "disable-gpu",
        "disable-dev-shm-usage",
        "disable-background-networking",
        "disable-component-update",
        "disable-sync",
        "no-first-run",
        "window-size=1400,1000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
