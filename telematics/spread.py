"""p50, p99 and max of a window of recent samples, for the live counters in /v1/stats."""

from __future__ import annotations

from collections.abc import Iterable


def spread(samples: Iterable[float], digits: int = 2) -> dict[str, float]:
    """Nearest-rank p50 and p99 and the maximum, rounded; zeros for no samples."""
    ordered = sorted(samples)

    def at(q: float) -> float:
        if not ordered:
            return 0.0
        return round(float(ordered[min(int(q * len(ordered)), len(ordered) - 1)]), digits)

    return {"p50": at(0.50), "p99": at(0.99), "max": at(1.0)}
