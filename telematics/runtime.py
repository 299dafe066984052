"""Process-wide runtime settings shared by the server, the simulator and the demo."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def pause_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile (background tasks' ticks)."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


#: Scheduled collections (see ``tune_gc``): young objects every 5 minutes; everything once
#: an hour, which bounds what cycles left by closed connections can hold. When this many
#: more objects have been allocated than freed since the last pass (a burst of new
#: connections: their state, long-lived), they are frozen instead of walked (``gc.freeze``
#: costs nothing); the hourly pass, or this many frozen, looks at them again.
YOUNG_EVERY_S = 300.0
YOUNG_AT_MOST = 400_000
FULL_EVERY_S = 3600.0
FROZEN_AT_MOST = 3_000_000


def tune_gc() -> None:
    """Collect cycles on our schedule (``run_collector``), not on allocation counts.

    A server holding thousands of connections always has tens of thousands of young
    objects alive (each connection's pending receive: coroutine, future, message), so
    every automatic young pass walked 40,000–90,000 objects and stopped the loop for
    25–150 ms, every few seconds, and middle passes for ~450 ms; the alarms that arrived
    meanwhile waited (profiled at 5,000 units × 1 Hz). In steady state those passes found
    no garbage at all (``gc_collected_by_generation`` in /v1/stats): reference counting
    frees everything the hot path makes. Collecting between loop callbacks still reclaims
    the cycles that error paths and closed connections leave.

    How often: the young objects are mostly each connection's pending receive and the
    vehicle's latest fix, always young because always replaced (~49,000 at 2,500
    connections: a 50 ms pass in a quiet process, 150–250 ms on the busy 2-core benchmark
    machine). Every 30 s, those passes put a few thousand acks a minute behind them, enough
    to move the ack p99; every 5 minutes a pass delays ~0.1 % of them."""
    gc.disable()


async def run_collector(
    young_every_s: float = YOUNG_EVERY_S,
    young_at_most: int = YOUNG_AT_MOST,
    full_every_s: float = FULL_EVERY_S,
    frozen_at_most: int = FROZEN_AT_MOST,
) -> None:
    """The scheduled collections for a process that called ``tune_gc`` (runs forever)."""
    loop = asyncio.get_running_loop()
    last_young = last_full = loop.time()
    # Counted here: gc.get_freeze_count() walks the frozen list (tens of ms a call at a
    # few million objects: 6 % of the load generator's CPU when it was asked every second).
    frozen = 0
    while True:
        await asyncio.sleep(1.0)
        now = loop.time()
        if now - last_full >= full_every_s or frozen >= frozen_at_most:
            gc.unfreeze()
            gc.collect(2)
            last_full = last_young = now
            frozen = 0
        elif now - last_young >= young_every_s:
            gc.collect(1)
            last_young = now
        elif (pending := gc.get_count()[0]) >= young_at_most:
            # At the connect ramp one pass over 400,000 new objects stopped the loop for
            # ~500 ms; they are the new connections' state and outlive any pass anyway.
            gc.freeze()
            frozen += pending


async def collecting(work: Awaitable[T]) -> T:
    """Await ``work`` with the scheduled collector running beside it."""
    collector = asyncio.create_task(run_collector(), name="gc")
    try:
        return await work
    finally:
        collector.cancel()


def tune_switching() -> None:
    """Hand the GIL over sooner (1 ms instead of 5 ms): the batch writer thread needs it
    after each database round trip, and every wait adds to the time until the ack."""
    sys.setswitchinterval(0.001)


def install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
