"""The REST contract under Schemathesis: the published OpenAPI document is the server.

A console process (its own port, data directory and database) runs against the shared
simulated cluster; Schemathesis reads its `/openapi.json` and runs every check, every phase
(examples, coverage, fuzzing, stateful) with a fixed seed. `GOOSEUI_TEST_FUZZ_EXAMPLES`
sets the examples per operation: the suite's default keeps the run under a minute, the
README's longer run uses 200.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("GOOSEUI_TEST_FUZZ_EXAMPLES", "10"))
SEED = "20261201"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def console_process(console_env: dict[str, str], tmp_path: Path) -> AsyncIterator[str]:
    """`python -m gooseui` on a free loopback port; stopped, and its log checked, after."""
    port = _free_port()
    # not under pytest, to NiceGUI's eyes: a console as an operator starts it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NICEGUI_"))}
    env |= {"GOOSEUI_HOST": "127.0.0.1", "GOOSEUI_PORT": str(port)}
    log_path = tmp_path / "console.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gooseui", env=env, stdout=log_file, stderr=log_file
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
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


async def test_schemathesis_finds_no_failure(console_process: str, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(CONFIG),
        "run", f"{console_process}/openapi.json",
        "--checks", "all",
        "--max-examples", str(EXAMPLES),
        "--seed", SEED,
        "--workers", "1",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await asyncio.wait_for(process.communicate(), 1200))[0].decode(errors="replace")
    assert process.returncode == 0, output[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 100, output[-3000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in output or f"✅ {phase}" in output, output[-3000:]
    print(output[output.find("SUMMARY") :])
