"""The batch writer: one transaction per flush, COPY per table, then acks.

Connections ``submit`` a :class:`StorePlan` and go on reading; the writer drains all
pending plans, commits them together (group commit: the busier the server, the bigger
the batch) and only then calls each plan's ``done`` callback, which sends the ack and
the interventions. ``submit`` waits while the backlog is full, so a slow database makes
ingest stop reading sockets instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import orjson

from telematics.classify.alarms import SEVERITY_RANK
from telematics.pipeline import AlarmRepeat, StorePlan

log = logging.getLogger(__name__)

Done = Callable[[StorePlan], None]

_TELEMETRY_COLS = (
    "vehicle_id",
    "seq",
    "ts",
    "received_at",
    "lat",
    "lon",
    "speed_kmh",
    "heading_deg",
    "driver_id",
    "ignition",
    "odometer_km",
    "extra",
)
_TIRE_COLS = ("vehicle_id", "seq", "ts", "pos", "kpa", "temp_c", "sensor_battery_pct")
_EVENT_COLS = (
    "vehicle_id",
    "seq",
    "ts",
    "received_at",
    "kind",
    "level",
    "lat",
    "lon",
    "speed_kmh",
    "driver_id",
    "attrs",
    "extra",
)
_REJECTED_COLS = ("vehicle_id", "seq", "received_at", "code", "reason", "raw")
_ALARM_COLS = (
    "id",
    "vehicle_id",
    "kind",
    "key",
    "severity",
    "reason",
    "derived",
    "level",
    "tire_pos",
    "first_seq",
    "first_ts",
    "last_seq",
    "last_ts",
    "occurrences",
    "lat",
    "lon",
    "speed_kmh",
    "rules_version",
    "late",
)
_INTERVENTION_COLS = (
    "id",
    "alarm_id",
    "vehicle_id",
    "severity",
    "action",
    "message",
    "cause_seq",
    "cause_kind",
    "issued_at",
    "status",
    "status_at",
)
_STATUS_COLS = ("intervention_id", "status", "at", "source")

#: SQLSTATE classes that mean "this data can never be stored": isolate and reject it.
#: Anything else (lost connection, admin shutdown, lock timeout, even a bug of ours) is
#: retried with backoff, because giving up would lose acknowledged-to-be data.
_DATA_ERROR_CLASSES = frozenset(("22", "23"))


def _is_data_error(exc: BaseException) -> bool:
    if isinstance(exc, (asyncpg.DataError, TypeError, ValueError)):
        return True  # a value the driver cannot encode (raised while building the COPY)
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, asyncpg.PostgresError) and str(state)[:2] in _DATA_ERROR_CLASSES


@dataclass(slots=True)
class _Pending:
    plan: StorePlan
    done: Done


@dataclass
class WriterStats:
    flushes: int = 0
    rows: int = 0
    items: int = 0
    duplicates_dropped: int = 0
    retries: int = 0
    last_flush_s: float = 0.0


class BatchWriter:
    def __init__(self, pool: asyncpg.Pool, max_pending: int = 20_000, max_flush: int = 10_000):
        self.pool = pool
        self.max_pending = max_pending
        self.max_flush = max_flush
        self.stats = WriterStats()
        self._queue: list[_Pending] = []
        self._pending_size = 0
        self._wakeup = asyncio.Event()
        self._space = asyncio.Condition()
        self._months: set[date] = set()
        self._closing = False

    @property
    def backlog(self) -> int:
        return self._pending_size

    async def submit(self, plan: StorePlan, done: Done) -> None:
        """Queue a plan; waits (backpressure) while the backlog is full."""
        if self._pending_size >= self.max_pending:
            async with self._space:
                await self._space.wait_for(lambda: self._pending_size < self.max_pending)
        self._queue.append(_Pending(plan, done))
        self._pending_size += plan.size
        self._wakeup.set()

    async def run(self) -> None:
        """Flush until cancelled or closed; retries transient database failures forever."""
        backoff = 0.05
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take()
            while True:
                try:
                    await self._flush_isolating(batch)
                    backoff = 0.05
                    break
                except Exception as exc:  # never give up on data we owe an ack for
                    self.stats.retries += 1
                    log.warning("flush failed (%r); retrying in %.2fs", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            self._pending_size -= sum(p.plan.size for p in batch)
            async with self._space:
                self._space.notify_all()
            for pending in batch:
                try:
                    pending.done(pending.plan)
                except Exception:  # a callback bug must not stop the writer
                    log.exception("post-commit callback failed")

    async def close(self) -> None:
        """Stop after everything queued so far is committed."""
        self._closing = True
        self._wakeup.set()

    def _take(self) -> list[_Pending]:
        size = cut = 0
        for pending in self._queue:
            if cut and size >= self.max_flush:
                break
            size += pending.plan.size
            cut += 1
        taken = self._queue[:cut]
        del self._queue[:cut]
        return taken

    async def _flush_isolating(self, batch: list[_Pending]) -> None:
        """Flush the batch; if the database refuses its data, find and reject the bad plans."""
        try:
            await self._flush([p.plan for p in batch])
        except (asyncpg.PostgresError, asyncpg.DataError, TypeError, ValueError) as exc:
            if not _is_data_error(exc):
                raise
            if len(batch) == 1:
                log.error("database refused a plan for %s: %s", batch[0].plan.vehicle_id, exc)
                batch[0].plan = _as_rejected(batch[0].plan, f"storage refused: {exc}")
                await self._flush([batch[0].plan])
                return
            mid = len(batch) // 2
            await self._flush_isolating(batch[:mid])
            await self._flush_isolating(batch[mid:])

    async def _flush(self, plans: list[StorePlan]) -> None:
        started = time.perf_counter()
        vehicle_ids = sorted({p.vehicle_id for p in plans if p.max_seq})
        async with self.pool.acquire() as conn, conn.transaction():
            cursors: dict[str, int] = {}
            if vehicle_ids:
                rows = await conn.fetch(
                    "SELECT vehicle_id, last_seq FROM ingest_cursor"
                    " WHERE vehicle_id = ANY($1::text[]) ORDER BY vehicle_id FOR UPDATE",
                    vehicle_ids,
                )
                cursors = {r["vehicle_id"]: r["last_seq"] for r in rows}
            plans = [self._drop_stored(p, cursors.get(p.vehicle_id, 0)) for p in plans]
            new_months = await self._ensure_partitions(conn, plans)
            await _copy(conn, "telemetry", _TELEMETRY_COLS, (r for p in plans for r in p.telemetry))
            await _copy(conn, "tire_readings", _TIRE_COLS, (r for p in plans for r in p.tires))
            await _copy(conn, "events", _EVENT_COLS, (r for p in plans for r in p.events))
            await _copy(
                conn, "rejected_items", _REJECTED_COLS, (r for p in plans for r in p.rejected)
            )
            await _copy(conn, "alarms", _ALARM_COLS, (r for p in plans for r in p.alarms))
            await self._repeat_alarms(conn, plans)
            interventions = [i for p in plans for i in p.interventions]
            await _copy(conn, "interventions", _INTERVENTION_COLS, (i.row() for i in interventions))
            await _copy(
                conn,
                "intervention_status",
                _STATUS_COLS,
                ((i.id, "issued", i.issued_at, "server") for i in interventions),
            )
            await self._device_statuses(conn, plans)
            advanced = [(p.vehicle_id, p.max_seq) for p in plans if p.max_seq]
            if advanced:
                await conn.execute(
                    """UPDATE ingest_cursor c SET last_seq = u.seq, updated_at = now()
                       FROM (SELECT v, max(s) AS seq
                             FROM unnest($1::text[], $2::bigint[]) AS t(v, s) GROUP BY v) u
                       WHERE c.vehicle_id = u.v AND u.seq > c.last_seq""",
                    [a[0] for a in advanced],
                    [a[1] for a in advanced],
                )
        self._months |= new_months  # only once committed: a rolled-back DDL is gone again
        self.stats.flushes += 1
        self.stats.items += sum(len(p.telemetry) + len(p.events) for p in plans)
        self.stats.rows += sum(
            len(p.telemetry) + len(p.tires) + len(p.events) + len(p.rejected) for p in plans
        )
        self.stats.last_flush_s = time.perf_counter() - started

    def _drop_stored(self, plan: StorePlan, cursor: int) -> StorePlan:
        """Drop what another connection of the same vehicle already committed."""
        if cursor == 0 or not plan.max_seq:
            return plan
        if plan.min_seq > cursor:
            return plan
        before = len(plan.telemetry) + len(plan.events)
        plan.telemetry = [r for r in plan.telemetry if r[1] > cursor]
        plan.tires = [r for r in plan.tires if r[1] > cursor]
        plan.events = [r for r in plan.events if r[1] > cursor]
        plan.rejected = [r for r in plan.rejected if r[1] is None or r[1] > cursor]
        plan.alarms = [r for r in plan.alarms if r[9] > cursor]
        kept_alarms = {r[0] for r in plan.alarms}
        plan.repeats = {k: v for k, v in plan.repeats.items() if v.last_seq > cursor}
        plan.interventions = [i for i in plan.interventions if i.cause_seq > cursor]
        plan.interventions = [
            i for i in plan.interventions if i.alarm_id in kept_alarms or i.alarm_id in plan.repeats
        ]
        self.stats.duplicates_dropped += before - len(plan.telemetry) - len(plan.events)
        return plan

    async def _ensure_partitions(
        self, conn: asyncpg.Connection, plans: list[StorePlan]
    ) -> set[date]:
        months = {r[2].date().replace(day=1) for p in plans for r in p.telemetry}
        months |= {r[2].date().replace(day=1) for p in plans for r in p.tires}
        new = months - self._months
        for month in sorted(new):
            await conn.execute("SELECT ensure_month_partitions($1)", month)
        return new

    async def _repeat_alarms(self, conn: asyncpg.Connection, plans: list[StorePlan]) -> None:
        # One row per alarm: an UPDATE applies only one source row per target row.
        merged: dict[str, AlarmRepeat] = {}
        for r in (r for p in plans for r in p.repeats.values()):
            prior = merged.get(r.alarm_id)
            if prior is None:
                merged[r.alarm_id] = AlarmRepeat(**{f: getattr(r, f) for f in r.__slots__})
                continue
            prior.occurrences += r.occurrences
            if r.last_seq > prior.last_seq:
                prior.last_seq, prior.last_ts = r.last_seq, r.last_ts
            if SEVERITY_RANK[r.severity] > SEVERITY_RANK[prior.severity]:
                prior.severity, prior.reason = r.severity, r.reason
        repeats = list(merged.values())
        if not repeats:
            return
        await conn.execute(
            """UPDATE alarms a SET last_seq = u.last_seq, last_ts = u.last_ts,
                      occurrences = a.occurrences + u.n,
                      severity = CASE WHEN u.sev_rank > (CASE a.severity WHEN 'general' THEN 0
                                      WHEN 'moderate' THEN 1 ELSE 2 END)
                                      THEN u.severity ELSE a.severity END,
                      reason = CASE WHEN u.severity <> a.severity THEN u.reason ELSE a.reason END
               FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::int[], $5::text[],
                           $6::text[], $7::int[])
                    AS u(id, last_seq, last_ts, n, severity, reason, sev_rank)
               WHERE a.id = u.id""",
            [r.alarm_id for r in repeats],
            [r.last_seq for r in repeats],
            [r.last_ts for r in repeats],
            [r.occurrences for r in repeats],
            [r.severity for r in repeats],
            [r.reason for r in repeats],
            [SEVERITY_RANK[r.severity] for r in repeats],
        )

    async def _device_statuses(self, conn: asyncpg.Connection, plans: list[StorePlan]) -> None:
        rows = [(p.vehicle_id, *s) for p in plans for s in p.device_statuses]
        if not rows:
            return
        args = (
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
        )
        # Only the vehicle's own interventions; unknown ids are ignored, not fatal to the batch.
        await conn.execute(
            """INSERT INTO intervention_status (intervention_id, status, at, source)
               SELECT u.id, u.status, u.at, 'device'
               FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                    AS u(vehicle_id, id, status, at)
               JOIN interventions i ON i.id = u.id AND i.vehicle_id = u.vehicle_id""",
            *args,
        )
        await conn.execute(
            """UPDATE interventions i SET status = u.status, status_at = u.at
               FROM (SELECT DISTINCT ON (id) id, vehicle_id, status, at, rank FROM (
                       SELECT *, array_position(
                           ARRAY['issued','delivered','played','driver_confirmed'], status) AS rank
                       FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                            AS t(vehicle_id, id, status, at)) r
                     ORDER BY id, rank DESC) u
               WHERE i.id = u.id AND i.vehicle_id = u.vehicle_id AND i.status <> 'expired'
                 AND u.rank > array_position(
                       ARRAY['issued','delivered','played','driver_confirmed'], i.status)""",
            *args,
        )


async def _copy(
    conn: asyncpg.Connection, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
) -> None:
    records = list(rows)
    if records:
        await conn.copy_records_to_table(table, records=records, columns=columns)


def _as_rejected(plan: StorePlan, reason: str) -> StorePlan:
    """Keep a plan the database refused as rejected items, so nothing is lost."""
    kept = StorePlan(plan.vehicle_id, min_seq=plan.min_seq, max_seq=plan.max_seq)
    for row in plan.telemetry:
        raw = orjson.dumps(dict(zip(_TELEMETRY_COLS, row, strict=True)), default=str)
        kept.rejected.append((plan.vehicle_id, row[1], row[3], "invalid_item", reason, raw))
    for row in plan.events:
        raw = orjson.dumps(dict(zip(_EVENT_COLS, row, strict=True)), default=str)
        kept.rejected.append((plan.vehicle_id, row[1], row[3], "invalid_item", reason, raw))
    for row in plan.rejected:
        kept.rejected.append((*row[:4], reason, *row[5:]))
    return kept
