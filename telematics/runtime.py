"""Process-wide runtime settings shared by the server, the simulator and the demo."""

from __future__ import annotations

import asyncio
import gc
import sys


def tune_gc() -> None:
    """Collect cycles rarely: with thousands of connections the heap holds millions of
    tracked objects, and at CPython's default thresholds the collector's full passes over
    them took ~40% of the event loop's time (profiled at 3,000 units × 1 Hz). Almost
    everything per frame is freed by reference counting; cycles still get collected."""
    gc.set_threshold(100_000, 50, 100)


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
