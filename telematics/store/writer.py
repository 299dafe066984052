"""The batch writer: one transaction per flush, COPY per table, then acks.

Connections ``submit`` a :class:`StorePlan` and go on reading; the writer drains all
pending plans, commits them together (group commit: the busier the server, the bigger
the batch) and only then calls each plan's ``done`` callback, which sends the ack and
the interventions. The alarms, their lifecycle rows (audit, dispatcher tasks, clears,
insurer outbox), the interventions and the units' reports on them go in the same
transaction, in one call (``store.alarms.apply_alarm_rows``); so do the zone
transitions. ``submit`` waits while the backlog is full, so a slow database makes
ingest stop reading sockets instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any

import asyncpg
import orjson

from telematics.classify.alarms import SEVERITY_RANK
from telematics.intervene.escalation import InterventionPolicy, LifecycleWrites, load_policy
from telematics.pipeline import AlarmRepeat, StorePlan
from telematics.store import alarms as alarm_store
from telematics.store import timestamps

log = logging.getLogger(__name__)

Done = Callable[[StorePlan], None]

_TELEMETRY_COLS = (
    "vehicle_id",
    "seq",
    "ts",
    "lat",
    "lon",
    "speed_kmh",
    "heading_deg",
    "driver_id",
    "ignition",
    "odometer_km",
    "extra",
)  # received_at defaults to the transaction time
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
#: The columns of `StorePlan.alarms` rows, in order (pipeline.VehicleProcessor._alarm).
ALARM_COLUMNS = (
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
    "probability",
    "model_version",
    "factors",
)
_ZONE_TRANSITION_COLS = ("vehicle_id", "zone_id", "transition", "ts", "seq", "lat", "lon")

#: SQLSTATE classes that mean "this data can never be stored": isolate and reject it.
#: Anything else (lost connection, admin shutdown, lock timeout, even a bug of ours) is
#: retried with backoff, because giving up would lose acknowledged-to-be data.
_DATA_ERROR_CLASSES = frozenset(("22", "23"))

#: The writer drops its connection's cached plans this long after its first flush, then
#: after twice as long each time (see ``_refresh_plans``).
REPLAN_FIRST = timedelta(seconds=10)


# Locks the vehicles' cursors in id order, advances them, and keeps each vehicle's newest
# fix on its row ({n}: this flush's fix is newer than the stored one). The input is one
# JSON array of [vehicle, seq, ts, lat, lon, speed, heading, driver] rows: asyncpg checks
# every element of an array parameter against three ABCs, which made eight arrays cost
# more CPU than the COPY of the telemetry itself; orjson writes the rows in one C call.
# The lock finds the cursors by id (= ANY): joined to the JSON rows, whose number the
# planner cannot know, it scanned every vehicle's cursor in every flush.
_NEWER = "(input.ts > coalesce(c.fix_ts, '-infinity'))"
_ADVANCE_CURSORS = """
    WITH input AS (SELECT r->>0 AS v, (r->>1)::bigint AS seq, (r->>2)::timestamptz AS ts,
                          (r->>3)::float8 AS lat, (r->>4)::float8 AS lon,
                          (r->>5)::float8 AS speed, (r->>6)::float8 AS heading,
                          r->>7 AS driver
                   FROM jsonb_array_elements($1::jsonb) AS r),
         locked AS (SELECT c.vehicle_id, c.last_seq FROM ingest_cursor c
                    WHERE c.vehicle_id = ANY(ARRAY(SELECT v FROM input))
                    ORDER BY c.vehicle_id FOR UPDATE OF c),
         moved AS (
             UPDATE ingest_cursor c SET last_seq = input.seq, updated_at = now(),
                 heard_at = greatest(c.heard_at, $2::timestamptz),
                 fix_ts = CASE WHEN {n} THEN input.ts ELSE c.fix_ts END,
                 lat = CASE WHEN {n} THEN input.lat ELSE c.lat END,
                 lon = CASE WHEN {n} THEN input.lon ELSE c.lon END,
                 speed_kmh = CASE WHEN {n} THEN input.speed ELSE c.speed_kmh END,
                 heading_deg = CASE WHEN {n} THEN input.heading ELSE c.heading_deg END,
                 driver_id = CASE WHEN {n} THEN input.driver ELSE c.driver_id END,
                 fix_at = CASE WHEN {n} THEN now() ELSE c.fix_at END
             FROM input JOIN locked ON locked.vehicle_id = input.v
             WHERE c.vehicle_id = input.v AND input.seq > locked.last_seq)
    SELECT vehicle_id, last_seq FROM locked""".replace("{n}", _NEWER)


def _is_data_error(exc: BaseException) -> bool:
    if isinstance(exc, (asyncpg.DataError, TypeError, ValueError)):
        return True  # a value the driver cannot encode (raised while building the COPY)
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, asyncpg.PostgresError) and str(state)[:2] in _DATA_ERROR_CLASSES


@dataclass(slots=True)
class _Pending:
    plan: StorePlan
    done: Done
    # The plan's size at submit: dropping replayed rows or rejecting the plan changes
    # plan.size later, and the backlog must release exactly what it took.
    size: int
    queued_at: float = field(default_factory=time.monotonic)


_RECENT_FLUSHES = 2048
_HOUR = timedelta(hours=1)
#: The exposure roll-up sums each hour in slices this long once they have closed
#: (insurer/store/exposure.py SLICE): a fix for a closed slice must bump its hour's version.
LATE_SLICE_S = 300
#: ... and only once it closed this long before the flush. Units that store and forward
#: (an upload every minute or two, common to save cellular data) send every fix minutes
#: old: with a one-minute margin each of their flushes re-summed their open hour from
#: the start. The roll-up waits longer than this (exposure.ROLLUP_DELAY).
LATE_MARGIN_S = 240


@dataclass
class WriterStats:
    flushes: int = 0
    rows: int = 0
    items: int = 0
    duplicates_dropped: int = 0
    retries: int = 0
    last_flush_s: float = 0.0
    # Recent flushes (appended by the writer thread): how long each took, how many items
    # it stored, and how long its oldest plan waited from submit to commit: the part of
    # a device's ack latency that the database decides.
    flush_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT_FLUSHES))
    flush_items: deque[int] = field(default_factory=lambda: deque(maxlen=_RECENT_FLUSHES))
    commit_wait_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT_FLUSHES))


class BatchWriter:
    """Group-commits plans on its own thread and event loop.

    The connection handlers' loop is busy with thousands of sockets; if the writer shared
    it, each of a flush's round trips to PostgreSQL would wait for a full turn of that
    loop. On its own thread a flush takes as long as the database needs, and group commit
    makes the batches grow with the load instead.
    """

    def __init__(
        self,
        database_url: str,
        max_pending: int = 20_000,
        max_flush: int = 10_000,
        min_interval_s: float = 0.075,
        linger_below: int = 512,
        escalation: InterventionPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.after_commit = after_commit  # runs on the main loop after a batch's callbacks
        self.max_pending = max_pending
        self.max_flush = max_flush
        self.min_interval_s = min_interval_s
        self.linger_below = linger_below
        self.escalation = escalation if escalation is not None else load_policy()
        self.clock = clock  # called on the writer thread: must be thread-safe
        self.stats = WriterStats()
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._waiting = False  # the writer thread sleeps on _cond
        self._lingering = False  # ... gathering a batch: woken once it is big enough
        self._queued_size = 0  # sum of the queued plans' sizes (guarded by _cond)
        self._inbox: list[_Pending] = []  # submitted this loop turn (main loop only)
        self._handoff_due = False
        self._closing = False  # drain what is queued, then stop
        self._abort = False  # stop after the current attempt (shutdown timed out)
        self._pending_size = 0  # touched on the main loop only
        self._space: asyncio.Condition | None = None
        self._main_loop: asyncio.AbstractEventLoop | None = None
        self._months: set[date] = set()
        self._marked_hour: dict[str, datetime] = {}  # vehicle → newest hour in telemetry_hours
        self._pending_marks: dict[str, datetime] = {}  # this flush's, kept once it commits
        self._notifiers: set[asyncio.Future[None]] = set()
        self._conn: asyncpg.Connection | None = None
        self._replan_at: datetime | None = None  # set by the first flush
        self._replan_step = REPLAN_FIRST

    @property
    def backlog(self) -> int:
        return self._pending_size

    async def submit(self, plan: StorePlan, done: Done) -> None:
        """Queue a plan; waits (backpressure) while the backlog is full."""
        if self._pending_size >= self.max_pending:
            space = self._space_condition()
            async with space:
                await space.wait_for(lambda: self._pending_size < self.max_pending)
        self._enqueue(plan, done)

    def offer(self, plan: StorePlan, done: Done) -> bool:
        """Queue a plan if the backlog has room; False (nothing queued) if not, and the
        caller awaits :meth:`submit`. The common case without a coroutine per frame."""
        if self._pending_size >= self.max_pending:
            return False
        self._enqueue(plan, done)
        return True

    def _enqueue(self, plan: StorePlan, done: Done) -> None:
        size = plan.size
        self._pending_size += size
        # Plans reach the writer thread once per turn of the loop, not one by one: taking
        # the lock and waking the thread per frame was 4 % of the loop's time under a flood.
        self._inbox.append(_Pending(plan, done, size))
        if not self._handoff_due:
            self._handoff_due = True
            asyncio.get_running_loop().call_soon(self._handoff)

    def _handoff(self) -> None:
        """On the main loop: move this turn's plans to the writer thread's queue."""
        self._handoff_due = False
        inbox, self._inbox = self._inbox, []
        if not inbox:
            return
        size = 0
        for pending in inbox:
            size += pending.size
        with self._cond:
            self._queue.extend(inbox)
            self._queued_size += size
            if self._waiting or (self._lingering and self._queued_size >= self.linger_below):
                self._waiting = self._lingering = False  # notified once per wake-up
                self._cond.notify()

    async def run(self) -> None:
        """Run the writer thread until ``close()`` has drained the queue (or cancellation)."""
        self._main_loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = self._main_loop.create_future()
        thread = threading.Thread(
            target=self._thread_main, args=(finished,), name="batch-writer", daemon=True
        )
        thread.start()
        try:
            await asyncio.shield(finished)
        except asyncio.CancelledError:
            with self._cond:
                self._abort = True
                self._cond.notify()
            raise

    async def close(self) -> None:
        """Stop after everything queued so far is committed."""
        self._handoff()
        with self._cond:
            self._closing = True
            self._cond.notify()

    def _space_condition(self) -> asyncio.Condition:
        if self._space is None:
            self._space = asyncio.Condition()
        return self._space

    # -- the writer thread -----------------------------------------------------------

    def _thread_main(self, finished: asyncio.Future[None]) -> None:
        main = self._main_loop
        assert main is not None
        loop = _new_loop()
        try:
            last_flush = 0.0
            while True:
                with self._cond:
                    while not self._queue and not self._closing and not self._abort:
                        self._waiting = True
                        self._cond.wait()
                        self._waiting = False
                    # Group commit with a floor on the interval: each flush costs several
                    # round trips, so at moderate load gather a few ms of plans into one.
                    # A batch already this big saves little by waiting; its acks would
                    # (at 10,000 frames/s a worker, the wait was most of the ack latency).
                    linger = last_flush + self.min_interval_s - time.monotonic()
                    if linger > 0 and not self._closing and self._queued_size < self.linger_below:
                        self._lingering = True
                        self._cond.wait(linger)
                        self._lingering = False
                    if self._abort or not self._queue:
                        break
                    batch = self._take()
                last_flush = time.monotonic()
                if not loop.run_until_complete(self._flush_with_retries(batch)):
                    break  # aborted: these plans were not committed, so they are not acked
                self.stats.commit_wait_ms.append((time.monotonic() - batch[0].queued_at) * 1e3)
                main.call_soon_threadsafe(self._completed, batch)
        except Exception:
            log.exception("the batch writer stopped")
        finally:
            if self._conn is not None and not self._conn.is_closed():
                loop.run_until_complete(self._conn.close())
            loop.close()
            if not main.is_closed():
                main.call_soon_threadsafe(_resolve, finished)

    async def _flush_with_retries(self, batch: list[_Pending]) -> bool:
        """Commit the batch, retrying every failure but data errors; False if aborted."""
        backoff = 0.05
        while not self._abort:
            try:
                await self._flush_isolating(batch)
                return True
            except Exception as exc:  # never give up on data we owe an ack for
                self.stats.retries += 1
                if self._conn is not None and not self._conn.is_closed():
                    self._conn.terminate()  # start the retry on a fresh session
                self._conn = None
                log.warning("flush failed (%r); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        return False

    def _completed(self, batch: list[_Pending]) -> None:
        """On the main loop: release backlog, wake waiting submitters, ack."""
        self._pending_size -= sum(p.size for p in batch)
        if self._space is not None:
            task = asyncio.ensure_future(self._notify_space())
            self._notifiers.add(task)
            task.add_done_callback(self._notifiers.discard)
        for pending in batch:
            try:
                pending.done(pending.plan)
            except Exception:  # a callback bug must not stop the writer
                log.exception("post-commit callback failed")
        if self.after_commit is not None:
            self.after_commit()

    async def _notify_space(self) -> None:
        space = self._space_condition()
        async with space:
            space.notify_all()

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        size = 0
        while self._queue and (not taken or size < self.max_flush):
            pending = self._queue.popleft()
            taken.append(pending)
            size += pending.size
        self._queued_size -= size
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
        conn = await self._connection()
        await self._refresh_plans(conn)
        self._pending_marks = {}
        async with conn.transaction():
            fixes, marks = _scan_telemetry(plans, self._marked_hour, _late_before(time.time()))
            cursors = await self._advance_cursors(conn, plans, fixes)
            # One pass over the plans (hundreds a flush, nearly all one reading each) for
            # every table's rows: a pass per table and statement was a fifth of the flush.
            rows = _Rows()
            for p in plans:
                rows.add(self._drop_stored(p, cursors.get(p.vehicle_id, 0)))
            new_months = await self._ensure_partitions(conn, rows.telemetry)
            await _copy(conn, "telemetry", _TELEMETRY_COLS, rows.telemetry)
            await self._hour_marks(conn, marks)
            await _copy(conn, "tire_readings", _TIRE_COLS, rows.tires)
            await _copy(conn, "events", _EVENT_COLS, rows.events)
            await _copy(conn, "rejected_items", _REJECTED_COLS, rows.rejected)
            if rows.rare:  # the plans with alarms, interventions, lifecycle, device reports
                await self._alarm_rows(conn, rows.rare)
            await _copy(conn, "zone_transitions", _ZONE_TRANSITION_COLS, rows.zone_transitions)
        self._months |= new_months  # only once committed: a rolled-back DDL is gone again
        self._marked_hour.update(self._pending_marks)
        items = len(rows.telemetry) + len(rows.events)
        self.stats.flushes += 1
        self.stats.items += items
        self.stats.flush_items.append(items)
        self.stats.rows += items + len(rows.tires) + len(rows.rejected)
        self.stats.last_flush_s = time.perf_counter() - started
        self.stats.flush_ms.append(self.stats.last_flush_s * 1e3)

    async def _refresh_plans(self, conn: asyncpg.Connection) -> None:
        """Drop the connection's cached plans 10 s after the first flush, then 20 s after
        that, 40 s, and so on.

        PostgreSQL caches a statement's plan after its fifth run, costed against the
        tables as they were then, and makes it again only after an ANALYZE. On a fresh
        database the writer's plans see empty tables, where a hash join over a full scan
        is cheapest, and went on scanning alarms and interventions whole in every flush
        until autovacuum's first analyze a minute or more later (~570,000 rows a second
        at 5,000 units). Tables grow with time, so with the intervals doubling no plan is
        older than half its tables' life; the next run of each statement plans afresh
        against their present size (PostgreSQL counts their pages, analyzed or not).
        Once the tables are big, the new plans are the old ones.
        """
        now = self.clock()
        if self._replan_at is None:
            self._replan_at = now + self._replan_step
        elif now >= self._replan_at:
            await conn.execute("DISCARD PLANS")
            self._replan_step *= 2
            self._replan_at = now + self._replan_step

    async def _hour_marks(
        self, conn: asyncpg.Connection, marks: dict[tuple[str, datetime], int]
    ) -> None:
        """Mark the first seq of each vehicle's hour in ``telemetry_hours`` (sql/009): how
        time ranges find telemetry without a second index on it. Written when a vehicle's
        hour changes, so about once an hour per vehicle; the lowest seq wins (replays)."""
        if not marks:
            return
        await conn.execute(
            """INSERT INTO telemetry_hours AS h (vehicle_id, hour, first_seq)
               SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[])
               ON CONFLICT (vehicle_id, hour) DO UPDATE
               SET first_seq = least(h.first_seq, excluded.first_seq), version = h.version + 1""",
            [k[0] for k in marks],
            [k[1] for k in marks],
            list(marks.values()),
        )
        # Remembered only for the newest hour: an older one (a replay) is checked again.
        for vehicle, hour in marks:
            newest = self._pending_marks.get(vehicle) or self._marked_hour.get(vehicle)
            if newest is None or hour > newest:
                self._pending_marks[vehicle] = hour

    async def _connection(self) -> asyncpg.Connection:
        """The writer's own connection (no pool: a pool's reset on release is a round trip)."""
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self.database_url)
            await timestamps.install(conn)  # the COPY's timestamps at a third of the CPU
            self._conn = conn
        return self._conn

    async def _advance_cursors(
        self, conn: asyncpg.Connection, plans: list[StorePlan], fixes: dict[str, tuple[Any, ...]]
    ) -> dict[str, int]:
        """Lock the vehicles' cursors (in id order), move them on, return the old values.

        The same statement keeps each vehicle's newest fix on its cursor row (sql/010):
        the live map reads it there, and an older fix (a replay) never overwrites it; and
        notes that the unit was heard from now (sql/014).
        """
        advanced: dict[str, int] = {}
        for p in plans:
            if p.max_seq > advanced.get(p.vehicle_id, 0):
                advanced[p.vehicle_id] = p.max_seq
        if not advanced:
            return {}
        inputs = []
        for vehicle, seq in advanced.items():
            fix = fixes.get(vehicle)  # (vehicle, seq, ts, lat, lon, speed, heading, driver, …)
            inputs.append((vehicle, seq, *fix[2:8]) if fix else (vehicle, seq))
        # heard_at in the server's clock (the unit_silent alarm's, see sql/014), not now():
        # the alarm timer compares it with the same clock.
        rows = await conn.fetch(_ADVANCE_CURSORS, orjson.dumps(inputs).decode(), self.clock())
        return {r["vehicle_id"]: r["last_seq"] for r in rows}

    async def _alarm_rows(self, conn: asyncpg.Connection, rare: list[StorePlan]) -> None:
        """The alarms, their repeats and lifecycle rows, the interventions and the units'
        reports on them, in one call (sql/018: each statement was a round trip, a quarter
        of a flush's time at 5,000 units); then what must be decided under row locks.

        The lifecycle rows come after the alarms were inserted and updated (they reference
        them). An intervention whose alarm is not stored is skipped, as lifecycle rows
        are: its alarm was dropped as a duplicate (another worker stored the same items
        first), and refusing the plan for it would turn the readings that came with it
        into rejected items.
        """
        lifecycle = LifecycleWrites()
        for p in rare:
            if p.lifecycle:
                lifecycle.extend(p.lifecycle)
        await alarm_store.write_lifecycle(
            conn,
            lifecycle,
            now=self.clock(),
            policy=self.escalation,
            along_with={
                "alarms": [
                    dict(zip(ALARM_COLUMNS, r, strict=True)) for p in rare for r in p.alarms
                ],
                "repeats": _repeat_rows(rare),
                "news": _alarm_news(rare),
                "interventions": [i.row() for p in rare for i in p.interventions],
                "statuses": [
                    {"vehicle_id": p.vehicle_id, "id": s[0], "status": s[1], "at": s[2]}
                    for p in rare
                    for s in p.device_statuses
                ],
            },
        )
        await self._stored_alarms(conn, rare)

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
        opened = plan.alarms
        plan.alarms = [r for r in opened if r[9] > cursor]
        kept_alarms = {r[0] for r in plan.alarms}
        if len(plan.alarms) < len(opened):  # its processor holds alarms that are not stored
            dropped = plan.dropped_alarms or {}  # (a retried flush finds them dropped already)
            dropped.update((r[0], r[3]) for r in opened if r[0] not in kept_alarms)
            plan.dropped_alarms = dropped
        plan.repeats = {k: v for k, v in plan.repeats.items() if v.last_seq > cursor}
        plan.interventions = [i for i in plan.interventions if i.cause_seq > cursor]
        plan.interventions = [
            i for i in plan.interventions if i.alarm_id in kept_alarms or i.alarm_id in plan.repeats
        ]
        plan.lifecycle = plan.lifecycle.keep(kept_alarms | set(plan.repeats))
        plan.zone_transitions = [r for r in plan.zone_transitions if r[4] > cursor]
        self.stats.duplicates_dropped += before - len(plan.telemetry) - len(plan.events)
        return plan

    async def _stored_alarms(self, conn: asyncpg.Connection, plans: list[StorePlan]) -> None:
        """For a plan whose alarms were dropped (rare: a unit that moved to another worker
        with items in flight), the vehicle's active alarms as this commit leaves them, read
        under its cursor lock, for its processor to adopt once committed."""
        for p in plans:
            if p.dropped_alarms:
                p.stored_alarms = await alarm_store.active_alarms_of(conn, p.vehicle_id)

    async def _ensure_partitions(
        self, conn: asyncpg.Connection, telemetry: list[tuple[Any, ...]]
    ) -> set[date]:
        """Create the UTC month partitions this batch needs (tire rows share their ts)."""
        if not telemetry:
            return set()
        lo, hi = _month_of(min(map(_TS, telemetry))), _month_of(max(map(_TS, telemetry)))
        # Only the months that occur: a unit whose GPS clock jumped back years (week
        # rollover) must not make this flush create every month in between.
        months = {lo} if lo == hi else {_month_of(r[2]) for r in telemetry}
        needed = months - self._months
        for month in sorted(needed):
            await conn.execute("SELECT ensure_month_partitions($1)", month)
        return needed


def _late_before(now_s: float) -> datetime:
    """Fixes before this are late: their roll-up slice had closed ``LATE_MARGIN_S``
    before this flush, so its exposure rollup may already be summed (sql/012, sql/015;
    the roll-up job waits ``ROLLUP_DELAY``, longer)."""
    return datetime.fromtimestamp((now_s - LATE_MARGIN_S) // LATE_SLICE_S * LATE_SLICE_S, UTC)


def _scan_telemetry(
    plans: list[StorePlan], marked_hour: dict[str, datetime], late_before: datetime
) -> tuple[dict[str, tuple[Any, ...]], dict[tuple[str, datetime], int]]:
    """One pass over the flush's fixes: each vehicle's newest fix (kept on its cursor row)
    and the lowest seq of each (vehicle, hour) not marked yet (``telemetry_hours``), or
    of a late fix's hour (its mark is written again, so its rollup is redone)."""
    fixes: dict[str, tuple[Any, ...]] = {}
    marks: dict[tuple[str, datetime], int] = {}
    for p in plans:
        for row in p.telemetry:  # (vehicle, seq, ts, lat, lon, speed, heading, driver, …)
            vehicle, seq, ts = row[0], row[1], row[2]
            best = fixes.get(vehicle)
            if best is None or ts > best[2]:
                fixes[vehicle] = row
            marked = marked_hour.get(vehicle)
            if marked is not None and marked <= ts < marked + _HOUR and ts >= late_before:
                continue  # the common case: truncating every fix's time cost more
            hour = ts.replace(minute=0, second=0, microsecond=0)
            if marked != hour or ts < late_before:
                key = (vehicle, hour)
                if key not in marks or seq < marks[key]:
                    marks[key] = seq
    return fixes, marks


def _repeat_rows(plans: list[StorePlan]) -> list[dict[str, Any]]:
    """One row per alarm repeated in the flush (an UPDATE applies only one source row per
    target row); a higher severity brings its grade along."""
    merged: dict[str, AlarmRepeat] = {}
    for r in (r for p in plans for r in p.repeats.values()):
        prior = merged.get(r.alarm_id)
        if prior is None:
            merged[r.alarm_id] = AlarmRepeat(**{f: getattr(r, f) for f in r.__slots__})
            continue
        prior.occurrences += r.occurrences
        prior.last_seq = max(prior.last_seq, r.last_seq)
        prior.last_ts = max(prior.last_ts, r.last_ts)
        if SEVERITY_RANK[r.severity] > SEVERITY_RANK[prior.severity]:
            prior.severity, prior.reason = r.severity, r.reason
            prior.probability, prior.model_version = r.probability, r.model_version
            prior.factors = r.factors
    return [
        {"id": r.alarm_id, "last_seq": r.last_seq, "last_ts": r.last_ts, "n": r.occurrences,
         "severity": r.severity, "reason": r.reason, "sev_rank": SEVERITY_RANK[r.severity],
         "probability": r.probability, "model_version": r.model_version,
         "factors": list(r.factors) or None}
        for r in merged.values()
    ]  # fmt: skip


def _alarm_news(plans: list[StorePlan]) -> list[str]:
    """For live views (the dashboard of every worker): new alarms and rises in severity,
    put on ``alarms.RAISED_CHANNEL`` and delivered at commit."""
    news = [
        {"id": r[0], "vehicle_id": r[1], "severity": r[4], "new": True}
        for p in plans
        for r in p.alarms
    ]
    for p in plans:
        for i in p.interventions:  # an intervention on an existing alarm: it rose
            if all(r[0] != i.alarm_id for r in p.alarms):
                news.append(
                    {"id": i.alarm_id, "vehicle_id": i.vehicle_id, "severity": i.severity,
                     "new": False}
                )  # fmt: skip
    return alarm_store.news_rows(news)


_TS = itemgetter(2)


@dataclass(slots=True)
class _Rows:
    """A flush's rows of every table; ``rare``: the few plans that carry more than
    readings (alarms, interventions, lifecycle writes, device reports), for the
    statements that only they need."""

    telemetry: list[tuple[Any, ...]] = field(default_factory=list)
    tires: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: list[tuple[Any, ...]] = field(default_factory=list)
    zone_transitions: list[tuple[Any, ...]] = field(default_factory=list)
    rare: list[StorePlan] = field(default_factory=list)

    def add(self, p: StorePlan) -> None:
        self.telemetry += p.telemetry
        if p.tires:
            self.tires += p.tires
        if p.events:
            self.events += p.events
        if p.rejected:
            self.rejected += p.rejected
        if p.zone_transitions:
            self.zone_transitions += p.zone_transitions
        if p.alarms or p.repeats or p.interventions or p.device_statuses:
            self.rare.append(p)
        elif p.dropped_alarms or p.lifecycle:
            self.rare.append(p)


async def _copy(
    conn: asyncpg.Connection, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
) -> None:
    records = rows if isinstance(rows, list) else list(rows)
    if records:
        await conn.copy_records_to_table(table, records=records, columns=columns)


def _as_rejected(plan: StorePlan, reason: str) -> StorePlan:
    """Keep a plan the database refused as rejected items, so nothing is lost.

    Its alarms, lifecycle writes, interventions and zone transitions are dropped with it.
    """
    kept = StorePlan(plan.vehicle_id, min_seq=plan.min_seq, max_seq=plan.max_seq)
    now = datetime.now(UTC)
    for row in plan.telemetry:
        raw = orjson.dumps(dict(zip(_TELEMETRY_COLS, row, strict=True)), default=str)
        kept.rejected.append((plan.vehicle_id, row[1], now, "invalid_item", reason, raw))
    for row in plan.events:
        raw = orjson.dumps(dict(zip(_EVENT_COLS, row, strict=True)), default=str)
        kept.rejected.append((plan.vehicle_id, row[1], row[3], "invalid_item", reason, raw))
    for row in plan.rejected:
        kept.rejected.append((*row[:4], reason, *row[5:]))
    return kept


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _month_of(ts: datetime) -> date:
    """The first day of ``ts``'s UTC month (partitions are by UTC month)."""
    utc = ts.astimezone(UTC)
    return date(utc.year, utc.month, 1)
