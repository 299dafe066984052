"""Did the intervention work? Whether the same behaviour recurred within 10 and 30 minutes.

The rule
--------
An intervention ``i`` answers one alarm ``a0`` (``i.alarm_id``). *The same behaviour* is
the same vehicle and the same alarm **key**: the key is what the alarm book already uses
for "the same alarm", i.e. the event kind, and for tire kinds the kind plus the tire
position (``tire_pressure_low:2LO``; ``tire_imbalance:axle2`` for an axle). A device tire
event without a valid position has the bare kind as its key and so matches only alarms
without a position, exactly as :func:`telematics.classify.rules.event_key` groups it.

With ``T = i.issued_at`` and ``S = i.cause_seq``, the behaviour is known to have recurred
by the earliest of:

``events``
    the ``ts`` of a device event of the vehicle with ``T < ts <= T + 30 min``, a seq
    after ``S`` and the same key (``kind``, or ``kind:attrs.pos`` for TPMS kinds). Exact.
``alarms``, a new alarm
    the ``first_ts`` of an alarm of the vehicle with the same key, ``T < first_ts <= T +
    30 min`` and ``first_seq > S``: a new alarm (device or derived occurrence) started.
    Exact.
``alarms``, the intervention's own alarm repeated
    ``least(a0.last_ts, T + G)`` when ``a0.last_ts > T`` and ``a0.last_seq > S``, where
    ``G`` is the longest gap two consecutive occurrences of one alarm can have
    (:class:`MaxGap`). Derived occurrences are not stored one by one: an alarm keeps only
    ``first_ts``, ``last_ts`` and ``occurrences``. ``last_ts`` itself is an occurrence
    after ``T``; and since an alarm is only ever extended by an occurrence within ``G``
    of its ``last_ts``, an alarm extended past ``T`` had an occurrence in ``(T, T + G]``.
    ``G`` is 5 min with today's alarm book (``Rules.cooldown_s`` groups repeats) and, with
    the alarm lifecycle, the kind's auto-clear absence (``MaxGap.from_clear_policy``).
    Where it is unbounded (a crash alarm never clears by itself) only ``last_ts`` counts.
    A too-large ``G`` can only miss recurrences, never invent them. Other alarms of the key
    cannot span ``T``: there is one open alarm per vehicle and key, and ``a0`` is the one
    that was open at ``T``.

``recurred_10m`` / ``recurred_30m`` say whether that instant is ``<= T + 10 min`` /
``<= T + 30 min``. ``ts`` is the unit's clock and ``issued_at`` the server's: the seq
conditions make sure the item that caused the intervention never counts as its own
recurrence, whatever the clock skew. Both event and alarm occurrences count whether the
unit or the server detected them: one alarm key groups both.

Outcomes are frozen in ``intervention_outcomes`` by :func:`evaluate_outcomes` once the
30-minute window (plus a grace for in-flight data) has closed; items replayed after that
do not rewrite them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg

from telematics.classify.rules import Rules
from telematics.errors import UsageError
from telematics.protocol.messages import DERIVED_KINDS, EVENT_KINDS, TPMS_KINDS
from telematics.runtime import pause_unless_stopped

log = logging.getLogger(__name__)

SHORT_WINDOW = timedelta(minutes=10)
LONG_WINDOW = timedelta(minutes=30)
#: Wait this long after a window closes before freezing its outcome, so that items still
#: in flight (writer batches, a unit's short reconnect) are stored first.
DEFAULT_GRACE = timedelta(minutes=2)
#: How far back ``evaluate_outcomes`` looks for interventions not yet evaluated.
DEFAULT_LOOKBACK = timedelta(days=1)

_SHORT = f"interval '{int(SHORT_WINDOW.total_seconds())} seconds'"
_LONG = f"interval '{int(LONG_WINDOW.total_seconds())} seconds'"
# The tire-position shape of telematics.classify.rules._TIRE_POS, as a PostgreSQL regex.
_POS_RE = "^[1-9][0-9]?[LR][OI]?$"


class ClearPolicyLike(Protocol):
    """What :meth:`MaxGap.from_clear_policy` needs of the lifecycle's ``ClearPolicy``."""

    def absent_after(self, kind: str, derived: bool) -> timedelta | None: ...


_UNBOUNDED = -1.0  # seconds, in the SQL arrays


@dataclass(frozen=True)
class MaxGap:
    """The longest gap between two consecutive occurrences grouped into one alarm, by the
    alarm's kind and ``derived`` flag; ``None``: unbounded. See the module docstring."""

    default: timedelta | None
    by_kind: Mapping[tuple[str, bool], timedelta | None] = field(default_factory=dict)

    @classmethod
    def from_cooldown(cls, cooldown_s: float) -> MaxGap:
        """One grouping gap for every kind: repeats within ``cooldown_s`` of the alarm's
        ``last_ts`` extend it (the first version's cool-down grouping)."""
        return cls(timedelta(seconds=cooldown_s))

    @classmethod
    def from_clear_policy(
        cls, policy: ClearPolicyLike, kinds: Iterable[str] = EVENT_KINDS | DERIVED_KINDS
    ) -> MaxGap:
        """The alarm lifecycle: an occurrence after the kind's absence time opens a new
        alarm; manual and condition kinds never lapse (unbounded). Unknown kinds too."""
        table = {(k, d): policy.absent_after(k, d) for k in sorted(kinds) for d in (False, True)}
        return cls(None, table)

    def of(self, kind: str, derived: bool) -> timedelta | None:
        return self.by_kind.get((kind, derived), self.default)

    def sql_args(self) -> list[Any]:
        """``text[]`` kinds, ``boolean[]`` derived, ``float8[]`` seconds, ``float8`` default."""
        items = sorted(self.by_kind.items())

        def secs(gap: timedelta | None) -> float:
            return _UNBOUNDED if gap is None else gap.total_seconds()

        return [
            [k for (k, _), _ in items],
            [d for (_, d), _ in items],
            [secs(g) for _, g in items],
            secs(self.default),
        ]


#: What the code base does today: the alarm book's default cooldown (5 minutes).
DEFAULT_MAX_GAP = MaxGap.from_cooldown(Rules().cooldown_s)


def recurrence_args(max_gap: MaxGap) -> list[Any]:
    """The five parameters :func:`first_recurrence_sql` refers to, in order."""
    return [*max_gap.sql_args(), list(TPMS_KINDS)]


def first_recurrence_sql(first: int, when: str = "true") -> str:
    """The body of a LATERAL subquery over ``interventions i`` joined to its alarm ``a0``:
    one column ``recurred_by``, the instant by which the behaviour had recurred (NULL: not
    within 30 minutes, or ``when`` is false, in which case no probe runs). Its parameters
    are ``$first`` … ``$first+4``, the values of :func:`recurrence_args`. Every probe is a
    bounded index range: ``events_vehicle_ts``, ``alarms_vehicle_key_first`` and the
    alarm's primary key."""
    kinds, derived, secs, default, tpms = (f"${first + n}" for n in range(5))
    gap = f"""coalesce(
                       (SELECT g.s FROM unnest({kinds}::text[], {derived}::boolean[],
                                               {secs}::float8[]) AS g(kind, derived, s)
                        WHERE g.kind = a0.kind AND g.derived = a0.derived),
                       {default}::float8)"""
    return f"""
        SELECT CASE WHEN {when} THEN least(
            (SELECT e.ts FROM events e
              WHERE e.vehicle_id = i.vehicle_id
                AND e.ts > i.issued_at AND e.ts <= i.issued_at + {_LONG}
                AND e.seq > i.cause_seq AND e.kind = a0.kind
                AND CASE WHEN e.kind = ANY({tpms}::text[])
                              AND e.attrs ->> 'pos' ~ '{_POS_RE}'
                         THEN e.kind || ':' || (e.attrs ->> 'pos')
                         ELSE e.kind END = a0.key
              ORDER BY e.ts LIMIT 1),
            (SELECT a.first_ts FROM alarms a
              WHERE a.vehicle_id = i.vehicle_id AND a.key = a0.key
                AND a.first_ts > i.issued_at AND a.first_ts <= i.issued_at + {_LONG}
                AND a.first_seq > i.cause_seq
              ORDER BY a.first_ts LIMIT 1),
            CASE WHEN a0.last_ts > i.issued_at AND a0.last_seq > i.cause_seq
                 THEN least(a0.last_ts, i.issued_at + make_interval(
                     secs => nullif({gap}, {_UNBOUNDED}))) END
        ) END AS recurred_by
        OFFSET 0"""  # a fence: pulled up, the probes would run again for each use


def recurred_sql(window: timedelta, recurred_by: str = "r.recurred_by") -> str:
    """Boolean SQL: the behaviour recurred within ``window`` (10 or 30 minutes)."""
    if window not in (SHORT_WINDOW, LONG_WINDOW):
        raise UsageError(f"recurrence windows are 10 and 30 minutes, not {window}")
    span = _SHORT if window == SHORT_WINDOW else _LONG
    return f"coalesce({recurred_by} <= i.issued_at + {span}, false)"


@dataclass(frozen=True, slots=True)
class Recurrence:
    intervention_id: str
    recurred_10m: bool
    recurred_30m: bool
    #: The behaviour had recurred at or before this instant (None: not within 30 minutes).
    recurred_by: datetime | None


async def recurrence(
    conn: asyncpg.Connection,
    intervention_ids: Iterable[str],
    *,
    max_gap: MaxGap = DEFAULT_MAX_GAP,
) -> dict[str, Recurrence]:
    """Recurrence of the given interventions as the database stands now (one query).

    For an intervention whose window is still open this is "so far"; unknown ids are
    left out of the result."""
    rows = await conn.fetch(
        f"""SELECT i.id, {recurred_sql(SHORT_WINDOW)} AS r10, {recurred_sql(LONG_WINDOW)} AS r30,
                   r.recurred_by
            FROM interventions i
            JOIN alarms a0 ON a0.id = i.alarm_id
            CROSS JOIN LATERAL ({first_recurrence_sql(2)}) r
            WHERE i.id = ANY($1::text[])""",
        list(intervention_ids),
        *recurrence_args(max_gap),
    )
    return {
        row["id"]: Recurrence(row["id"], row["r10"], row["r30"], row["recurred_by"]) for row in rows
    }


async def evaluate_outcomes(
    conn: asyncpg.Connection,
    now: datetime,
    *,
    batch_size: int = 1000,
    max_gap: MaxGap = DEFAULT_MAX_GAP,
    grace: timedelta = DEFAULT_GRACE,
    lookback: timedelta | None = DEFAULT_LOOKBACK,
) -> int:
    """Freeze the outcome of every intervention whose 30-minute window closed by ``now``
    (``issued_at + 30 min + grace <= now``) and that has none yet; returns how many.

    Idempotent and safe to run concurrently (``ON CONFLICT DO NOTHING``); each batch of
    ``batch_size`` is its own statement, so locks stay short. Only interventions issued
    within ``lookback`` of ``now`` are considered (None: all), which keeps a periodic run
    an index range instead of a walk through all history; the report computes the
    outcome of anything older that was never frozen on the fly."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be ≥ 1, got {batch_size}")
    closed_before = now - LONG_WINDOW - grace
    args: list[Any] = [now, closed_before, batch_size, *recurrence_args(max_gap)]
    floor = ""
    if lookback is not None:
        args.append(now - lookback)
        floor = "AND i.issued_at >= $9"
    sql = f"""
        WITH due AS (
            SELECT i.id FROM interventions i
            WHERE i.issued_at <= $2 {floor}
              AND NOT EXISTS (SELECT 1 FROM intervention_outcomes o
                              WHERE o.intervention_id = i.id)
            ORDER BY i.issued_at, i.id
            LIMIT $3)
        INSERT INTO intervention_outcomes (intervention_id, recurred_10m, recurred_30m,
                                           evaluated_at)
        SELECT i.id, {recurred_sql(SHORT_WINDOW)}, {recurred_sql(LONG_WINDOW)}, $1
        FROM due
        JOIN interventions i ON i.id = due.id
        JOIN alarms a0 ON a0.id = i.alarm_id
        CROSS JOIN LATERAL ({first_recurrence_sql(4)}) r
        ON CONFLICT (intervention_id) DO NOTHING"""
    total = 0
    while True:
        status = await conn.execute(sql, *args)
        inserted = int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <n>"
        total += inserted
        if inserted < batch_size:
            return total


async def run_evaluator(
    pool: asyncpg.Pool,
    stop: asyncio.Event,
    *,
    interval_s: float = 60.0,
    max_gap: MaxGap = DEFAULT_MAX_GAP,
) -> None:
    """Run :func:`evaluate_outcomes` every ``interval_s`` until ``stop`` is set (for the
    server). A failed pass is logged and retried at the next tick."""
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                now = await conn.fetchval("SELECT now()")
                done = await evaluate_outcomes(conn, now, max_gap=max_gap)
            if done:
                log.info("evaluated %d intervention outcome(s)", done)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("intervention outcomes: %s", exc)
        await pause_unless_stopped(stop, interval_s)
