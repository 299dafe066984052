"""When to retry a webhook delivery (pure): exponential backoff with jitter, capped.

Attempt n (1-based) failed → wait ``base × 2^(n-1)``, at most ``cap``, scaled by a
random factor in [0.5, 1] ("equal jitter", so a crowd of failures after an outage spreads
out). Messages are retried until their ``retry_until`` (3 days after creation by default,
sql/007_insurers.sql), so a receiver may be down for more than a day without loss.
"""

from __future__ import annotations

import random
from datetime import timedelta

BASE_S = 5.0
CAP_S = 3600.0


def retry_delay(
    attempts: int,
    *,
    base_s: float = BASE_S,
    cap_s: float = CAP_S,
    rng: random.Random | None = None,
) -> timedelta:
    exponent = min(max(attempts - 1, 0), 32)
    delay = min(cap_s, base_s * 2**exponent)
    factor = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=delay * factor)


def is_success(status: int) -> bool:
    return 200 <= status < 300


GONE = 410  # the receiver says the endpoint is gone: stop sending to it
