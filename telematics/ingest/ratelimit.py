"""Token bucket for frames per unit; pure (the caller supplies the clock)."""

from __future__ import annotations


class TokenBucket:
    """``take(now)`` returns how long the caller should wait before reading on (0 = none)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
