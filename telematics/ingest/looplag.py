"""How late the event loop runs, and how long the cycle collector stops it.

A late loop is a late voice alert: every frame, ack and intervention waits for its turn.
The monitor wakes every ``period_s`` and records how much later than asked it woke; the
collector's pauses are timed through ``gc.callbacks``. Both are exposed in ``/v1/stats``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from typing import Any

from telematics.spread import spread


class LoopMonitor:
    def __init__(self, period_s: float = 0.01, keep: int = 6000) -> None:
        self.period_s = period_s
        self.lags_ms: deque[float] = deque(maxlen=keep)  # one minute at the default period
        self.gc_pauses = [0, 0, 0]  # per generation
        self.gc_max_ms = [0.0, 0.0, 0.0]
        self.gc_total_ms = [0.0, 0.0, 0.0]
        self.gc_collected = [0, 0, 0]  # unreachable objects freed: cycles made by our code
        self._gc_started = 0.0

    async def run(self) -> None:
        gc.callbacks.append(self._on_gc)
        try:
            loop = asyncio.get_running_loop()
            while True:
                asked = loop.time() + self.period_s
                await asyncio.sleep(self.period_s)
                self.lags_ms.append(max(loop.time() - asked, 0.0) * 1000)
        finally:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            pause = (time.perf_counter() - self._gc_started) * 1000
            generation = info["generation"]
            self.gc_pauses[generation] += 1
            self.gc_max_ms[generation] = max(self.gc_max_ms[generation], pause)
            self.gc_total_ms[generation] += pause
            self.gc_collected[generation] += info["collected"]

    def snapshot(self) -> dict[str, Any]:
        return {
            "loop_lag_ms": spread(self.lags_ms),
            "gc_pauses_by_generation": self.gc_pauses,
            "gc_pause_max_ms_by_generation": [round(m, 2) for m in self.gc_max_ms],
            "gc_pause_total_ms_by_generation": [round(m, 2) for m in self.gc_total_ms],
            "gc_collected_by_generation": self.gc_collected,
        }
