"""The pacer: one heap of due ticks instead of a sleeping task per unit (timelines)."""

from __future__ import annotations

import asyncio
import itertools

from telematics.sim.pacer import MAX_BEHIND_PERIODS, Pacer


class Recorder:
    def __init__(self, name: str, log: list[tuple[str, float]], stop_after: int = 10**9) -> None:
        self.name, self.log, self.left = name, log, stop_after
        self.now = 0.0

    def tick(self) -> bool:
        self.log.append((self.name, self.now))
        self.left -= 1
        return self.left > 0


def _run(pacer: Pacer, units: list[Recorder], times: list[float]) -> None:
    for t in times:
        for u in units:
            u.now = t
        pacer.run_due(t)


def test_each_tick_runs_once_per_period_in_due_order() -> None:
    log: list[tuple[str, float]] = []
    a, b = Recorder("a", log), Recorder("b", log)
    pacer = Pacer(1.0)
    pacer.add(b.tick, 0.5)
    pacer.add(a.tick, 0.2)
    _run(pacer, [a, b], [0.1, 0.3, 0.6, 1.0, 1.25, 1.5, 2.6])
    assert log == [("a", 0.3), ("b", 0.6), ("a", 1.25), ("b", 1.5), ("a", 2.6), ("b", 2.6)]


def test_a_late_pacer_catches_up_but_never_bursts_beyond_a_few_periods() -> None:
    log: list[tuple[str, float]] = []
    a = Recorder("a", log)
    pacer = Pacer(1.0)
    pacer.add(a.tick, 0.0)
    _run(pacer, [a], [3.5])  # 3.5 periods late: every missed reading is made up
    assert len(log) == 4
    log.clear()
    _run(pacer, [a], [20.0])  # far behind (an overloaded loop): one reading, then paced
    assert len(log) == 1 and MAX_BEHIND_PERIODS < 16
    _run(pacer, [a], [20.5, 21.0, 21.9])
    assert log == [("a", 20.0), ("a", 21.0)]


def test_a_tick_that_says_stop_or_fails_leaves_the_pacer() -> None:
    log: list[tuple[str, float]] = []
    twice = Recorder("twice", log, stop_after=2)

    def broken() -> bool:
        raise RuntimeError("bug in one unit")

    pacer = Pacer(1.0)
    pacer.add(twice.tick, 0.0)
    pacer.add(broken, 0.0)
    _run(pacer, [twice], [0.0, 1.0, 2.0, 3.0])
    assert [n for n, _ in log] == ["twice", "twice"]
    assert len(pacer) == 0


async def test_run_paces_on_the_event_loop() -> None:
    loop = asyncio.get_running_loop()
    seen: list[float] = []
    fifth = asyncio.Event()

    def tick() -> bool:
        seen.append(loop.time())
        if len(seen) == 5:
            fifth.set()
        return len(seen) < 5

    pacer = Pacer(0.02)
    pacer.add(tick, loop.time())
    task = asyncio.create_task(pacer.run())
    try:
        await asyncio.wait_for(fifth.wait(), 5)
    finally:
        task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert len(seen) == 5 and sum(gaps) / len(gaps) >= 0.015
