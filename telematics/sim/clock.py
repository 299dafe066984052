"""Fast RFC 3339 timestamps for items: ``2026-11-26T08:00:00.250Z``.

Formatting a datetime per reading is a measurable share of the simulator's cost at
tens of thousands of readings per second, so the ``YYYY-MM-DDTHH:MM:SS.`` prefix is
cached per whole second and only the milliseconds are formatted per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: A source of the current time in seconds since the epoch (``time.time``).
Clock = Callable[[], float]

#: Local time of the simulated fleet (China Standard Time, no DST) for day/night.
LOCAL_UTC_OFFSET_H = 8.0


_MILLIS = [f"{i:03d}Z" for i in range(1000)]


class TsFormatter:
    """Formats epoch seconds as UTC with millisecond precision and a ``Z`` suffix."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, t: float) -> str:
        ms = int(t * 1000.0)
        sec = ms // 1000
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
        return self._prefix + _MILLIS[ms - sec * 1000]


#: Shared formatter (the simulator runs on one thread).
format_ts = TsFormatter()


def local_hour(t: float) -> float:
    """Hour of the day (0 ≤ h < 24) in the fleet's local time for epoch seconds ``t``."""
    return (t / 3600.0 + LOCAL_UTC_OFFSET_H) % 24.0


def is_night(t: float) -> bool:
    """Night driving (22:00–06:00 local), when fatigue-related events are more likely."""
    h = local_hour(t)
    return h >= 22.0 or h < 6.0
