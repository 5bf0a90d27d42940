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
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .conftest import console_replica

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("GOOSEUI_TEST_FUZZ_EXAMPLES", "10"))
SEED = "20261201"


@pytest.fixture
async def console_process(console_env: dict[str, str], tmp_path: Path) -> AsyncIterator[str]:
    async with console_replica(tmp_path / "console") as running:
        yield running.url


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
