"""How late the event loop runs: the measure of whether anything blocks it.

A task asks to wake every `interval` seconds and records how much later it actually woke.
Streams, pages and cluster calls all share one loop, so this is the number that says
whether one of them stalls the others.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any


class LoopLagMonitor:
    def __init__(self, interval: float = 0.02, keep: int = 20_000) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=keep)
        self.worst_at: float | None = None  # wall-clock time of the worst stall, to find its cause
        self._worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop lag monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.perf_counter() - before - self.interval)
            self.samples.append(lag)
            if lag > self._worst:
                self._worst, self.worst_at = lag, time.time() - lag

    def reset(self) -> None:
        self.samples.clear()
        self._worst, self.worst_at = 0.0, None

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"samples": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {
            "samples": len(ordered),
            "p50_ms": at(0.5),
            "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1000, 2),
            "worst_at": self.worst_at,
        }
