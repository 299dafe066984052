import asyncio
import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from telematics.ingest.looplag import LoopMonitor
from telematics.runtime import run_collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.enable()


async def test_scheduled_collector_frees_cycles_on_time(collector_off: None) -> None:
    ref = weakref.ref(Node())
    await asyncio.sleep(0)
    assert ref() is not None  # automatic collection is off
    task = asyncio.create_task(run_collector(young_every_s=0.5, full_every_s=3600))
    try:
        for _ in range(40):
            await asyncio.sleep(0.1)
            if ref() is None:
                break
        assert ref() is None
    finally:
        task.cancel()


async def test_a_pile_of_new_objects_is_frozen_and_the_full_pass_frees_its_cycles(
    collector_off: None,
) -> None:
    ref = weakref.ref(Node())
    ballast = [[i] for i in range(5_000)]  # tracked allocations the count sees
    # Freeze once 1,000 are pending; a full pass once anything is frozen (the next tick).
    task = asyncio.create_task(
        run_collector(young_every_s=3600, young_at_most=1_000, frozen_at_most=1)
    )
    frozen_seen = 0
    try:
        for _ in range(40):
            await asyncio.sleep(0.1)
            frozen_seen = max(frozen_seen, gc.get_freeze_count())
            if ref() is None:
                break
        assert frozen_seen >= 5_000  # first set aside without a pass …
        assert ref() is None and gc.get_freeze_count() == 0  # … then looked at again
        assert len(ballast) == 5_000
    finally:
        task.cancel()


async def test_loop_monitor_sees_a_blocked_loop_and_collections() -> None:
    monitor = LoopMonitor(period_s=0.005)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.12)  # the loop is stuck: the next wake-up is ~120 ms late
        await asyncio.sleep(0.02)
        gc.collect(1)
        snapshot = monitor.snapshot()
    finally:
        task.cancel()
    assert snapshot["loop_lag_ms"]["max"] >= 100
    assert snapshot["loop_lag_ms"]["p50"] < 100
    assert snapshot["gc_pauses_by_generation"][1] >= 1
