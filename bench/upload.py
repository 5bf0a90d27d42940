"""Console memory under a 200 MB request body, with and without the body limit.

The console (default `GOOSEUI_MAX_BODY`, 1 MiB) and, as the baseline in the same run, a
FastAPI app with the same kind of route and no limit (how the console behaved before it had
one) each receive the same 200 MB JSON body, once with a Content-Length and once chunked;
the server's resident memory (VmRSS) is sampled every 10 ms before, during and after.

Run: `uv run python bench/upload.py [--megabytes N]`. Loopback only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from common import console_process, free_port, mongodb_ready


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def body(megabytes: int) -> Iterator[bytes]:
    """`{"name": "xxx…"}` of `megabytes` MB, made as it is sent."""
    yield b'{"name": "'
    chunk = b"x" * (1024 * 1024)
    for _ in range(megabytes):
        yield chunk
    yield b'"}'


def upload(base: str, pid: int, megabytes: int, chunked: bool) -> dict[str, float | int]:
    size = megabytes * 1024 * 1024 + len(b'{"name": ""}')
    headers = {"content-type": "application/json"}
    if not chunked:
        headers["content-length"] = str(size)
    before = rss_mb(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        response = httpx.post(f"{base}/users/alice/projects", content=body(megabytes),
                              headers=headers, timeout=300)  # fmt: skip
        status = response.status_code
    except httpx.TransportError:  # the console answered 413 and closed before the body ended
        status = -1
    seconds = time.perf_counter() - started
    time.sleep(1.0)
    done.set()
    sampler.join()
    return {"status": status, "before": before, "peak": peak, "after": rss_mb(pid), "s": seconds}


BASELINE = """
import sys
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

class NameIn(BaseModel):
    name: str

app = FastAPI()

@app.post("/users/{user_id}/projects", status_code=201)
async def create(user_id: str, body: NameIn) -> dict:
    return {"length": len(body.name)}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@contextmanager
def baseline() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BASELINE, str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{base}/docs", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base, process
    finally:
        process.terminate()
        process.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        servers = [
            ("gooseui (1 MiB limit)", lambda: console_process(Path(tmp), ready=mongodb_ready)),
            ("baseline: no limit", baseline),
        ]
        for label, start in servers:
            with start() as (base, process):
                for chunked in (False, True):
                    result = upload(base, process.pid, args.megabytes, chunked)
                    rows.append((label, "chunked" if chunked else "Content-Length", result))
    print(f"{args.megabytes} MB JSON body to POST /users/alice/projects; console VmRSS in MB")
    heading = ("status", "before", "peak", "after", "s")
    print(f"{'server':<22} {'body':<15} " + " ".join(f"{h:>7}" for h in heading))
    for label, kind, r in rows:
        print(f"{label:<22} {kind:<15} {r['status']:>7} {r['before']:>7.0f} {r['peak']:>7.0f} "
              f"{r['after']:>7.0f} {r['s']:>7.2f}")  # fmt: skip
    limited = max(r["peak"] - r["before"] for label, _, r in rows if label.startswith("gooseui"))
    free = max(r["peak"] - r["before"] for label, _, r in rows if label.startswith("baseline"))
    print(f"peak growth: {limited:.0f} MB with the limit, {free:.0f} MB without "
          f"({free / max(limited, 1):.0f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
