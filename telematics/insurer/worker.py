"""The webhook delivery worker: a task of every server process (``build_app``).

Several workers (processes) share the outbox through ``SKIP LOCKED`` claims; each message
is leased while in flight, so one that a crashed process was sending goes out again after
the lease (same ``webhook-id``: receivers deduplicate on it). Only a 2xx answer counts;
410 disables the endpoint; anything else (or no answer) is retried with backoff until the
message's ``retry_until``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from telematics.config import env_float
from telematics.insurer import egress, signing
from telematics.insurer.backoff import BASE_S, CAP_S, GONE, is_success, retry_delay
from telematics.insurer.store import webhooks as store
from telematics.runtime import pause_unless_stopped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    poll_s: float = 1.0  # idle sleep between two looks at the outbox
    batch: int = 50  # messages claimed at once
    lease_s: float = 60.0  # in flight this long before another worker may resend
    timeout_s: float = 10.0  # per request
    retry_base_s: float = BASE_S
    retry_cap_s: float = CAP_S

    @classmethod
    def from_env(cls) -> WorkerSettings:
        """``TELEMATICS_WEBHOOK_POLL_S``, ``…_LEASE_S``, ``…_TIMEOUT_S``, ``…_RETRY_BASE_S``,
        ``…_RETRY_CAP_S`` (seconds, positive and finite; ``serve`` checks them at start)."""

        def seconds(name: str, default: float) -> float:
            return env_float(f"TELEMATICS_WEBHOOK_{name.upper()}", default)

        return cls(
            poll_s=seconds("poll_s", cls.poll_s),
            lease_s=seconds("lease_s", cls.lease_s),
            timeout_s=seconds("timeout_s", cls.timeout_s),
            retry_base_s=seconds("retry_base_s", cls.retry_base_s),
            retry_cap_s=seconds("retry_cap_s", cls.retry_cap_s),
        )


async def send(session: aiohttp.ClientSession, due: store.Due) -> tuple[int | None, str | None]:
    """POST one message; (HTTP status, error text)."""
    timestamp = int(time.time())
    headers = signing.headers(due.secrets, due.webhook_id, timestamp, due.payload)
    try:
        if not egress.allow_private():
            egress.check_literal(urlsplit(due.url).hostname or "")
        async with session.post(
            due.url, data=due.payload, headers=headers, allow_redirects=False
        ) as resp:
            await resp.read()
            error = None if is_success(resp.status) else f"HTTP {resp.status}"
            return resp.status, error
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]


async def deliver_batch(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, settings: WorkerSettings
) -> int:
    """Claim, send and record one batch; returns how many messages were tried."""
    async with pool.acquire() as conn, conn.transaction():
        batch = await store.claim_due(conn, settings.batch, timedelta(seconds=settings.lease_s))
    if not batch:
        return 0

    async def one(due: store.Due) -> None:
        started = time.perf_counter()
        status, error = await send(session, due)
        elapsed = (time.perf_counter() - started) * 1000
        delay = retry_delay(due.attempts, base_s=settings.retry_base_s, cap_s=settings.retry_cap_s)
        async with pool.acquire() as conn:
            await store.record_attempt(
                conn,
                due,
                status,
                error,
                elapsed,
                delivered=status is not None and is_success(status),
                gone=status == GONE,
                retry_at=datetime.now(UTC) + delay,
            )

    await asyncio.gather(*(one(d) for d in batch))
    return len(batch)


async def run_delivery_worker(
    pool: asyncpg.Pool, stop: asyncio.Event, settings: WorkerSettings | None = None
) -> None:
    """Deliver until ``stop`` is set; a failed pass is logged and retried."""
    settings = settings or WorkerSettings.from_env()
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    connector = aiohttp.TCPConnector(**egress.connector_options())
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        while not stop.is_set():
            try:
                tried = await deliver_batch(pool, session, settings)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("webhook deliveries: %s", exc)
                tried = 0
            if tried:
                continue  # more may be due right away
            await pause_unless_stopped(stop, settings.poll_s)
