"""Start-up time of the console with its embedded database, and REST latency.

Prints, side by side, the console and a baseline measured in the same run:
- start-up: `gooseui` from spawn to `/readyz` reporting MongoDB ready, beside the embedded
  database alone;
- latency: median/p95 of `POST` and `GET` project calls, beside the same insert/find made
  directly with PyMongo against an embedded database (the floor the REST face adds to).

Run: `uv run python bench/api_latency.py [--requests N]`. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from common import console, mongodb_ready, pct

from gooseui.embedded import EmbeddedMongo
from gooseui.service import new_project_id
from gooseui.store import create_client, name_key, now


async def baseline(requests: int, data: Path) -> dict[str, float]:
    server = EmbeddedMongo(data / "baseline-db")
    started = time.perf_counter()
    uri = await server.start()
    start_s = time.perf_counter() - started
    mongo = create_client(uri)
    collection = mongo["bench"]["projects"]
    await collection.create_index([("user_id", 1), ("project_id", 1)], unique=True)
    await collection.create_index([("user_id", 1), ("name_key", 1)], unique=True)
    inserts, finds = [], []
    for i in range(requests):
        pid = new_project_id()
        doc = {
            "user_id": "alice",
            "project_id": pid,
            "name": f"p{i}",
            "name_key": name_key(f"p{i}"),
            "status": "inactive",
            "created_at": now(),
            "updated_at": now(),
        }
        t = time.perf_counter()
        await collection.insert_one(doc)
        inserts.append(time.perf_counter() - t)
        t = time.perf_counter()
        await collection.find_one({"user_id": "alice", "project_id": pid})
        finds.append(time.perf_counter() - t)
    await mongo.close()
    await server.stop()
    return {
        "start": start_s,
        "post_p50": statistics.median(inserts),
        "post_p95": pct(inserts, 0.95),
        "get_p50": statistics.median(finds),
        "get_p95": pct(finds, 0.95),
    }


def served(requests: int, data: Path) -> dict[str, float]:
    started = time.perf_counter()
    result: dict[str, float] = {}
    with (
        console(data / "console", ready=mongodb_ready) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        result["start"] = time.perf_counter() - started
        posts, gets = [], []
        for i in range(requests):
            t = time.perf_counter()
            response = client.post("/users/alice/projects", json={"name": f"p{i}"})
            posts.append(time.perf_counter() - t)
            assert response.status_code == 201, response.text
            pid = response.json()["project_id"]
            t = time.perf_counter()
            assert client.get(f"/users/alice/projects/{pid}").status_code == 200
            gets.append(time.perf_counter() - t)
        result.update(
            post_p50=statistics.median(posts),
            post_p95=pct(posts, 0.95),
            get_p50=statistics.median(gets),
            get_p95=pct(gets, 0.95),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gooseui-bench-") as tmp:
        data = Path(tmp)
        direct = asyncio.run(baseline(args.requests, data))
        served_ = served(args.requests, data)
    print(f"{'metric':<28}{'console':>12}{'baseline':>12}{'ratio':>8}   baseline is")
    rows = [
        ("start-up to ready (s)", "start", "embedded database alone"),
        ("POST project p50 (ms)", "post_p50", "PyMongo insert_one"),
        ("POST project p95 (ms)", "post_p95", "PyMongo insert_one"),
        ("GET project p50 (ms)", "get_p50", "PyMongo find_one"),
        ("GET project p95 (ms)", "get_p95", "PyMongo find_one"),
    ]
    for label, key, what in rows:
        scale = 1 if key == "start" else 1000
        a, b = served_[key] * scale, direct[key] * scale
        print(f"{label:<28}{a:>12.2f}{b:>12.2f}{a / b:>8.1f}x  {what}")
    print(f"({args.requests} sequential requests each, loopback, one client)")


if __name__ == "__main__":
    main()
