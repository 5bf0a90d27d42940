"""The relay's own CPU cost per event, against an earlier version of it, without the network.

`bench/relay.py` measures the whole path (console, API server proxy, simulated agent, its
MongoDB) on a machine whose two cores all of them share, so its run-to-run spread (±30 %)
hides any change in the relay itself. This feeds the same recorded agent stream (N message
deltas and `complete`, in network-sized chunks) through `Reply.events()` of this tree and of
an earlier commit, in one process, alternating, and prints events per second side by side.

Run: `uv run python bench/relay_cpu.py [--base REV] [--events 5000] [--chunk 1400] [--rounds 7]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import httpx

from gooseui import chat as current

ROOT = Path(__file__).resolve().parents[1]


def earlier(rev: str) -> types.ModuleType:
    """`gooseui/chat.py` as it was at `rev`, loaded beside today's."""
    source = subprocess.run(
        ["git", "show", f"{rev}:gooseui/chat.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    spec = importlib.util.spec_from_loader(f"chat_at_{rev}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source, f"chat.py@{rev}", "exec"), module.__dict__)
    return module


def recorded_stream(events: int, session: str = "s-1") -> bytes:
    """What the agent sends for a reply: compact JSON events, as the real server writes."""
    out = []
    for index in range(events):
        content = {
            "role": "Assistant",
            "content": f"w{index} ",
            "content_type": "text",
            "timestamp": 1796000000,
            "session_id": session,
        }
        payload = {"type": "message", "content": content}
        out.append(b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")
    done = {"type": "complete", "content": {"message": "Response complete", "session_id": session}}
    out.append(b"data: " + json.dumps(done, separators=(",", ":")).encode() + b"\n\n")
    return b"".join(out)


class Chunks(httpx.AsyncByteStream):
    def __init__(self, data: bytes, size: int) -> None:
        self.data = data
        self.size = size

    async def __aiter__(self):  # type: ignore[override]
        for start in range(0, len(self.data), self.size):
            yield self.data[start : start + self.size]
            await asyncio.sleep(0)  # a network read per chunk


async def run_once(module: types.ModuleType, data: bytes, chunk: int, events: int) -> float:
    chat = module.ChatService(None, None)  # only its session bookkeeping is used
    project = types.SimpleNamespace(user_id="alice", project_id="p1")
    response = httpx.Response(200, stream=Chunks(data, chunk))
    chat._running.add("s-1")
    reply = module.Reply(chat, project, "s-1", response, 15.0)
    started = time.perf_counter()
    relayed = 0
    async for block in reply.events():
        relayed += block.count(b'data: {"type":"message"')
    seconds = time.perf_counter() - started
    assert relayed == events, (relayed, events)
    return events / seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="c101828", help="the earlier commit to compare with")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=1400, help="bytes per network read")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    before = earlier(args.base)
    data = recorded_stream(args.events)
    rates: dict[str, list[float]] = {"this tree": [], args.base: []}
    for _ in range(args.rounds):
        rates["this tree"].append(await run_once(current, data, args.chunk, args.events))
        rates[args.base].append(await run_once(before, data, args.chunk, args.events))
    base = statistics.median(rates[args.base])
    print(f"relay CPU, {args.events} events in {args.chunk}-byte reads, median of {args.rounds}")
    for label, values in rates.items():
        median = statistics.median(values)
        print(f"  {label:<12} {median:>12,.0f} events/s   ratio {median / base:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
