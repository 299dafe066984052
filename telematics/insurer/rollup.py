"""The exposure roll-up: a task of every server process (``build_app``).

Each hour of each vehicle is summed into ``exposure_hours`` a five-minute slice at a time
as the slices close (and again from its start if late fixes arrive for it), so insurers'
scores and loss reports read a row per vehicle-hour and a few minutes of fixes instead
of every fix. An advisory lock lets one process work at a time; the others find
it held and wait for their next tick. Small transactions, newest hours first, and pauses
as long as the work leave the database to ingest.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from telematics.insurer.scoring import RiskWeights
from telematics.insurer.store.exposure import roll_up
from telematics.runtime import pause_unless_stopped

log = logging.getLogger(__name__)

BATCH = 100  # vehicle-hours a transaction: up to 360,000 fixes at 1 Hz, 30,000 a slice
# Between transactions while catching up, as long as the last one took: a backlog (months
# of hours after an upgrade) takes at most about half of a database core.
MIN_PAUSE_S = 0.2


async def roll_up_now(
    conn: asyncpg.Connection, weights: RiskWeights, *, limit: int, wait: bool = False
) -> int:
    """One batch of :func:`roll_up` as of the database's clock, with the scores' settings."""
    return await roll_up(
        conn,
        now=await conn.fetchval("SELECT now()"),
        gap_s=weights.segment_gap_s,
        min_kmh=weights.driving_min_kmh,
        limit=limit,
        wait=wait,
    )


async def run_rollups(
    pool: asyncpg.Pool, stop: asyncio.Event, weights: RiskWeights, *, interval_s: float = 60.0
) -> None:
    """Roll up what has closed every ``interval_s`` until ``stop`` is set. A failed pass is
    logged and retried at the next tick (requests read the fixes meanwhile)."""
    while not stop.is_set():
        total = 0
        try:
            while not stop.is_set():
                started = time.monotonic()
                async with pool.acquire() as conn:
                    done = await roll_up_now(conn, weights, limit=BATCH)
                total += done
                if done < BATCH:
                    break
                await asyncio.sleep(max(MIN_PAUSE_S, time.monotonic() - started))
            if total:
                log.info("rolled up %d vehicle-hour(s) of exposure", total)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("exposure roll-up: %r", exc)
        await pause_unless_stopped(stop, interval_s)
