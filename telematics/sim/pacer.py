"""One task that paces every unit's readings (instead of one sleeping task per unit).

At 5,000 units × 1 Hz, a task per unit costs the load generator a timer, a future and
a task wake-up per reading. Here the units wait in one heap ordered by due time; the
pacer wakes every 2–10 ms and calls each due unit's tick.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable

log = logging.getLogger("telematics.sim")

#: A unit's tick: generate (and send) one reading; False to stop being paced.
Tick = Callable[[], bool]

#: Sleeps between checks: at least 2 ms (uvloop's clock has 1 ms steps, so shorter
#: sleeps spin without the time moving on), at most 10 ms (a unit added meanwhile).
MIN_SLEEP_S = 0.002
MAX_SLEEP_S = 0.010
#: A unit that fell this many periods behind (an overloaded loop) skips, not bursts.
MAX_BEHIND_PERIODS = 5


class Pacer:
    """Calls each added tick once per ``period_s`` from its first due time on."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._heap: list[tuple[float, int, Tick]] = []
        self._order = itertools.count()  # ties: first added runs first, ticks never compared

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, tick: Tick, first_due: float) -> None:
        heapq.heappush(self._heap, (first_due, next(self._order), tick))

    def run_due(self, now: float) -> int:
        """Call every tick due at ``now`` (loop time); how many ran."""
        heap = self._heap
        period = self.period_s
        ran = 0
        while heap and heap[0][0] <= now:
            due, order, tick = heapq.heappop(heap)
            next_due = due + period
            if now - next_due > MAX_BEHIND_PERIODS * period:
                next_due = now + period
            ran += 1
            try:
                keep = tick()
            except Exception:  # one unit's bug must not stop the others' readings
                log.exception("a unit's generator failed; it stops generating")
                keep = False
            if keep:
                heapq.heappush(heap, (next_due, order, tick))
        return ran

    async def run(self) -> None:
        """Pace until cancelled."""
        loop = asyncio.get_running_loop()
        heap = self._heap
        while True:
            self.run_due(loop.time())
            delay = heap[0][0] - loop.time() if heap else MAX_SLEEP_S
            await asyncio.sleep(min(max(delay, MIN_SLEEP_S), MAX_SLEEP_S))
