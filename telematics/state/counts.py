"""Rolling occurrence counts per event kind, in bounded memory."""

from __future__ import annotations

import bisect
from collections import deque

from telematics.errors import UsageError


class RecentCounts:
    """Timestamps (epoch s) of recent occurrences of each kind, oldest first.

    Kept for ``retention_s`` behind the newest occurrence seen and at most
    ``max_per_kind`` per kind. An occurrence within ``merge_s`` after an earlier one of the
    same kind is the same occurrence: units re-raise a lasting alarm every few seconds,
    and a derived and a device harsh brake of one stop arrive together.
    """

    def __init__(self, retention_s: float, merge_s: float, max_per_kind: int) -> None:
        self.retention_s = retention_s
        self.merge_s = merge_s
        self.max_per_kind = max_per_kind
        self._times: dict[str, deque[float]] = {}
        self._newest = float("-inf")

    def record(self, kind: str, t: float) -> bool:
        """Count one occurrence at ``t``; False when merged into an existing one."""
        times = self._times.get(kind)
        if times is None:
            times = self._times[kind] = deque(maxlen=self.max_per_kind)
        i = bisect.bisect_right(times, t)
        # A replayed (older) item lands in order; it merges with a neighbour within merge_s.
        if i > 0 and t - times[i - 1] <= self.merge_s:
            return False
        if i < len(times) and times[i] - t <= self.merge_s:
            return False
        if t < self._newest - self.retention_s:
            return False  # too old to matter for any window we answer
        if i == len(times):
            times.append(t)  # the common case; a full deque drops its oldest
        else:
            if len(times) == times.maxlen:
                if i == 0:
                    return False  # older than everything kept: bounded memory wins
                times.popleft()
                i -= 1
            times.insert(i, t)
        if t > self._newest:
            self._newest = t
            self._trim()
        return True

    def count(self, kind: str, window_s: float, now: float) -> int:
        """Occurrences with ``now - window_s < t <= now``."""
        if window_s > self.retention_s:
            raise UsageError(f"window {window_s:g} s exceeds retention {self.retention_s:g} s")
        times = self._times.get(kind)
        if not times:
            return 0
        return bisect.bisect_right(times, now) - bisect.bisect_right(times, now - window_s)

    def count_all(self, window_s: float, now: float) -> int:
        """Occurrences of every kind with ``now - window_s < t <= now``."""
        if window_s > self.retention_s:
            raise UsageError(f"window {window_s:g} s exceeds retention {self.retention_s:g} s")
        lo = now - window_s
        right = bisect.bisect_right
        return sum(right(times, now) - right(times, lo) for times in self._times.values())

    def _trim(self) -> None:
        horizon = self._newest - self.retention_s
        for kind in list(self._times):
            times = self._times[kind]
            while times and times[0] < horizon:
                times.popleft()
            if not times:
                del self._times[kind]
