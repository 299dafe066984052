"""Did the intervention work? Recurrence within 10/30 minutes, frozen outcomes, the report
and its command line, on timelines written straight into a real PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from telematics.config import load_settings
from telematics.errors import TelematicsError
from telematics.report import evaluate_outcomes, recurrence, report_interventions
from telematics.report.cli import add_arguments, report_command
from telematics.report.recurrence import MaxGap, run_evaluator
from telematics.store.database import create_pool
from tests.helpers import add_vehicle

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)


class Timeline:
    """Rows written as the writer would: alarms, interventions, events, status history."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._ids = itertools.count(1)
        self._seq = itertools.count(1000)

    def seq(self) -> int:
        return next(self._seq)

    async def alarm(
        self,
        vehicle: str,
        kind: str,
        first_ts: datetime,
        *,
        pos: str | None = None,
        key: str | None = None,
        last_ts: datetime | None = None,
        first_seq: int | None = None,
        last_seq: int | None = None,
        occurrences: int | None = None,
        derived: bool = False,
        severity: str = "moderate",
    ) -> tuple[str, int]:
        """A new alarm; returns its id and first seq."""
        alarm_id = f"A{next(self._ids)}"
        first_seq = self.seq() if first_seq is None else first_seq
        last_ts = first_ts if last_ts is None else last_ts
        if last_seq is None:
            last_seq = first_seq if last_ts == first_ts else self.seq()
        key = key or (f"{kind}:{pos}" if pos else kind)
        await self.conn.execute(
            """INSERT INTO alarms (id, vehicle_id, kind, key, severity, reason, derived, level,
                                   tire_pos, first_seq, first_ts, last_seq, last_ts, occurrences,
                                   lat, lon, speed_kmh, rules_version)
               VALUES ($1, $2, $3, $4, $5, 'test', $6, NULL, $7, $8, $9, $10, $11, $12,
                       31.3, 120.6, 60, 'test')""",
            alarm_id, vehicle, kind, key, severity, derived, pos, first_seq, first_ts,
            last_seq, last_ts, occurrences or (1 if last_seq == first_seq else 2),
        )  # fmt: skip
        return alarm_id, first_seq

    async def intervention(
        self,
        alarm_id: str,
        issued_at: datetime,
        cause_seq: int,
        *,
        severity: str | None = None,
        action: str = "voice_alert",
    ) -> str:
        intervention_id = f"I{next(self._ids)}"
        await self.conn.execute(
            """WITH ins AS (
                   INSERT INTO interventions (id, alarm_id, vehicle_id, severity, action, message,
                                              cause_seq, cause_kind, issued_at, status, status_at)
                   SELECT $1, a.id, a.vehicle_id, coalesce($3, a.severity), $4, 'msg', $5,
                          a.kind, $6, 'issued', $6
                   FROM alarms a WHERE a.id = $2
                   RETURNING id, issued_at)
               INSERT INTO intervention_status (intervention_id, status, at, source)
               SELECT id, 'issued', issued_at, 'server' FROM ins""",
            intervention_id, alarm_id, severity, action, cause_seq, issued_at,
        )  # fmt: skip
        return intervention_id

    async def alarmed(
        self, vehicle: str, kind: str, at: datetime, *, pos: str | None = None, **kw: Any
    ) -> str:
        """An alarm raised at ``at`` and its intervention issued at once."""
        alarm_id, seq = await self.alarm(vehicle, kind, at, pos=pos, **kw)
        return await self.intervention(alarm_id, at, seq)

    async def event(
        self, vehicle: str, kind: str, ts: datetime, *, pos: str | None = None, seq: int = 0
    ) -> None:
        await self.conn.execute(
            """INSERT INTO events (vehicle_id, seq, ts, received_at, kind, level, lat, lon,
                                   speed_kmh, attrs)
               VALUES ($1, $2, $3, $3, $4, 1, 31.3, 120.6, 60, $5::jsonb)""",
            vehicle, seq or self.seq(), ts, kind,
            None if pos is None else json.dumps({"pos": pos}),
        )  # fmt: skip

    async def status(self, intervention_id: str, status: str, at: datetime) -> None:
        await self.conn.execute(
            """INSERT INTO intervention_status (intervention_id, status, at, source)
               VALUES ($1, $2, $3, 'device')""",
            intervention_id, status, at,
        )  # fmt: skip


@pytest.fixture
async def tl(db_url: str, db: asyncpg.Connection) -> Timeline:
    await add_vehicle(db_url, "V1", "coach", fleet="F1")
    await add_vehicle(db_url, "V2", "hazmat", fleet="F2")
    await add_vehicle(db_url, "V3", "bus", fleet="F1")
    return Timeline(db)


async def flags(db: asyncpg.Connection, *ids: str, **kw: Any) -> list[tuple[bool, bool]]:
    found = await recurrence(db, ids, **kw)
    return [(found[i].recurred_10m, found[i].recurred_30m) for i in ids]


# ---- the rule ----


async def test_device_event_recurrence_windows(tl: Timeline, db: asyncpg.Connection) -> None:
    hour = timedelta(hours=1)
    at5, at20, at40 = T0, T0 + hour, T0 + 2 * hour
    i5 = await tl.alarmed("V1", "fatigue", at5)
    i20 = await tl.alarmed("V1", "fatigue", at20)
    i40 = await tl.alarmed("V1", "fatigue", at40)
    await tl.event("V1", "fatigue", at5 + 5 * MIN)
    await tl.event("V1", "fatigue", at20 + 20 * MIN)
    await tl.event("V1", "fatigue", at40 + 40 * MIN)
    assert await flags(db, i5, i20, i40) == [(True, True), (False, True), (False, False)]
    found = await recurrence(db, [i5, i40])
    assert found[i5].recurred_by == at5 + 5 * MIN and found[i40].recurred_by is None


async def test_window_bounds_are_after_issue_and_inclusive_at_the_end(
    tl: Timeline, db: asyncpg.Connection
) -> None:
    hour = timedelta(hours=1)
    at_issue = await tl.alarmed("V1", "smoking", T0)
    at_10 = await tl.alarmed("V1", "smoking", T0 + hour)
    at_30 = await tl.alarmed("V1", "smoking", T0 + 2 * hour)
    await tl.event("V1", "smoking", T0)  # the same instant is not "after"
    await tl.event("V1", "smoking", T0 + hour + 10 * MIN)
    await tl.event("V1", "smoking", T0 + 2 * hour + 30 * MIN)
    assert await flags(db, at_issue, at_10, at_30) == [(False, False), (True, True), (False, True)]


async def test_other_vehicle_or_kind_never_counts(tl: Timeline, db: asyncpg.Connection) -> None:
    i = await tl.alarmed("V1", "phone_call", T0)
    await tl.event("V2", "phone_call", T0 + 2 * MIN)  # other vehicle
    await tl.event("V1", "smoking", T0 + 3 * MIN)  # other kind
    await tl.alarm("V2", "phone_call", T0 + 4 * MIN)  # other vehicle's new alarm
    await tl.alarm("V1", "distraction", T0 + 5 * MIN, derived=True)  # other kind
    assert await flags(db, i) == [(False, False)]


async def test_the_cause_itself_never_counts_despite_clock_skew(
    tl: Timeline, db: asyncpg.Connection
) -> None:
    # The unit's clock runs 30 s ahead: its event is stamped after the server issued.
    alarm_id, seq = await tl.alarm("V1", "yawning", T0 + 30 * SEC)
    i = await tl.intervention(alarm_id, T0, seq)
    await tl.event("V1", "yawning", T0 + 30 * SEC, seq=seq)
    assert await flags(db, i) == [(False, False)]


async def test_tire_position_matters(tl: Timeline, db: asyncpg.Connection) -> None:
    i = await tl.alarmed("V2", "tire_pressure_low", T0, pos="2LO")
    await tl.event("V2", "tire_pressure_low", T0 + 2 * MIN, pos="2RO")  # other tire
    await tl.event("V2", "tire_pressure_low", T0 + 3 * MIN)  # no position
    await tl.alarm("V2", "tire_pressure_low", T0 + 4 * MIN, pos="1LO", derived=True)
    assert await flags(db, i) == [(False, False)]
    await tl.event("V2", "tire_pressure_low", T0 + 20 * MIN, pos="2LO")
    assert await flags(db, i) == [(False, True)]
    # a derived alarm of the same tire is the same behaviour
    await tl.alarm("V2", "tire_pressure_low", T0 + 6 * MIN, pos="2LO", derived=True)
    assert await flags(db, i) == [(True, True)]


async def test_tire_event_without_valid_position_matches_the_bare_kind(
    tl: Timeline, db: asyncpg.Connection
) -> None:
    i = await tl.alarmed("V2", "tire_temp_high", T0)  # a unit that sent no position
    await tl.event("V2", "tire_temp_high", T0 + 2 * MIN, pos="3LO")
    assert await flags(db, i) == [(False, False)]
    await tl.event("V2", "tire_temp_high", T0 + 4 * MIN, pos="wheel 3")  # not a position
    assert await flags(db, i) == [(True, True)]


async def test_derived_new_alarm_windows(tl: Timeline, db: asyncpg.Connection) -> None:
    hour = timedelta(hours=1)
    ids = []
    for n, after in enumerate((5, 20, 40)):
        at = T0 + n * hour
        ids.append(await tl.alarmed("V2", "harsh_brake", at, derived=True))
        await tl.alarm("V2", "harsh_brake", at + after * MIN, derived=True)
    assert await flags(db, *ids) == [(True, True), (False, True), (False, False)]
    slow = await tl.alarmed("V2", "tire_imbalance", T0, key="tire_imbalance:axle2", derived=True)
    await tl.alarm("V2", "tire_imbalance", T0 + 8 * MIN, key="tire_imbalance:axle1", derived=True)
    await tl.alarm("V2", "tire_imbalance", T0 + 9 * MIN, key="tire_imbalance:axle2", derived=True)
    assert await flags(db, slow) == [(True, True)]


async def test_derived_repeats_of_the_intervention_alarm(
    tl: Timeline, db: asyncpg.Connection
) -> None:
    # Repeats extend the alarm: only first_ts/last_ts/occurrences are stored. The book
    # groups occurrences at most `cooldown` apart, so the first repeat after issue came
    # within min(last_ts, issued_at + cooldown).
    hour = timedelta(hours=1)
    short = await tl.alarmed("V2", "overspeed", T0, last_ts=T0 + 3 * MIN, derived=True)
    long_ = await tl.alarmed("V2", "overspeed", T0 + hour, last_ts=T0 + hour + 40 * MIN,
                             occurrences=9, derived=True)  # fmt: skip
    lone = await tl.alarmed("V2", "overspeed", T0 + 2 * hour, derived=True)
    assert await flags(db, short, long_, lone) == [(True, True), (True, True), (False, False)]
    looser = MaxGap.from_cooldown(15 * 60)  # a looser grouping policy
    assert await flags(db, short, long_, lone, max_gap=looser) == [
        (True, True), (False, True), (False, False)
    ]  # fmt: skip
    assert await flags(db, long_, max_gap=MaxGap.from_cooldown(45 * 60)) == [(False, False)]
    assert await flags(db, long_, max_gap=MaxGap(None)) == [(False, False)]  # unbounded

    # a severity rise on an alarm open since before: repeats after the rise count
    alarm_id, _ = await tl.alarm("V1", "lane_departure", T0 - 4 * MIN, last_ts=T0 + 2 * MIN,
                                 first_seq=tl.seq(), last_seq=tl.seq() + 5)  # fmt: skip
    rise = await tl.intervention(alarm_id, T0, cause_seq=tl.seq(), severity="severe")
    # a unit back from a 90-s gap: cause and a repeat both before the server issued
    late_id, late_seq = await tl.alarm("V1", "headway_too_close", T0 + hour - 90 * SEC,
                                       last_ts=T0 + hour - 60 * SEC)  # fmt: skip
    before = await tl.intervention(late_id, T0 + hour, late_seq)
    assert await flags(db, rise, before) == [(True, True), (False, False)]


class ClearPolicy:
    """The lifecycle's auto-clear: fatigue lapses after 15 min, other kinds after 5, a
    collision never by itself (a stand-in for telematics.intervene.lifecycle.ClearPolicy)."""

    def absent_after(self, kind: str, derived: bool) -> timedelta | None:
        if kind == "collision" or (derived and kind == "tire_pressure_low"):
            return None  # manual; a condition raised once on onset, cleared when it ends
        return 15 * MIN if kind == "fatigue" else 5 * MIN


async def test_lifecycle_gaps_by_kind(tl: Timeline, db: asyncpg.Connection) -> None:
    hour = timedelta(hours=1)
    fatigue = await tl.alarmed("V1", "fatigue", T0, last_ts=T0 + 40 * MIN, occurrences=5)
    smoking = await tl.alarmed("V1", "smoking", T0 + hour, last_ts=T0 + hour + 40 * MIN)
    crash = await tl.alarmed("V1", "collision", T0 + 2 * hour, last_ts=T0 + 2 * hour + 45 * MIN)
    crash_soon = await tl.alarmed("V2", "collision", T0, last_ts=T0 + 25 * MIN)
    gaps = MaxGap.from_clear_policy(ClearPolicy())
    assert gaps.of("fatigue", True) == 15 * MIN and gaps.of("collision", False) is None
    assert gaps.of("no_such_kind", False) is None
    assert await flags(db, fatigue, smoking, crash, crash_soon, max_gap=gaps) == [
        (False, True), (True, True), (False, False), (False, True)
    ]  # fmt: skip
    # derived or not: the alarm's own flag picks the gap
    tire = await tl.alarmed("V2", "tire_pressure_low", T0, pos="2LO", last_ts=T0 + 40 * MIN)
    derived = await tl.alarmed("V2", "tire_pressure_low", T0, pos="1LO", derived=True,
                               last_ts=T0 + 40 * MIN)  # fmt: skip
    assert await flags(db, tire, derived, max_gap=gaps) == [(True, True), (False, False)]
    # today's alarm book groups every kind within 5 minutes
    assert await flags(db, fatigue, crash) == [(True, True), (True, True)]


# ---- frozen outcomes ----


async def test_evaluate_outcomes_is_idempotent_and_skips_open_windows(
    tl: Timeline, db: asyncpg.Connection
) -> None:
    now = T0 + timedelta(hours=3)
    closed = await tl.alarmed("V1", "fatigue", now - 60 * MIN)
    in_grace = await tl.alarmed("V1", "smoking", now - 31 * MIN)  # closed, data may be in flight
    open_ = await tl.alarmed("V1", "distraction", now - 20 * MIN)
    await tl.event("V1", "fatigue", now - 45 * MIN)  # 15 min after `closed`

    assert await evaluate_outcomes(db, now) == 1
    assert await evaluate_outcomes(db, now) == 0
    rows = await db.fetch("SELECT * FROM intervention_outcomes")
    assert [(r["intervention_id"], r["recurred_10m"], r["recurred_30m"], r["evaluated_at"])
            for r in rows] == [(closed, False, True, now)]  # fmt: skip

    later = now + 15 * MIN
    assert await evaluate_outcomes(db, later) == 2
    done = {r["intervention_id"] for r in await db.fetch("SELECT * FROM intervention_outcomes")}
    assert done == {closed, in_grace, open_}
    assert await evaluate_outcomes(db, later) == 0


async def test_evaluate_outcomes_batches_and_looks_back(
    tl: Timeline, db: asyncpg.Connection
) -> None:
    now = T0 + timedelta(days=3)
    old = await tl.alarmed("V1", "fatigue", T0)  # beyond the default one-day lookback
    recent = [await tl.alarmed("V2", "smoking", now - (40 + n) * MIN) for n in range(5)]
    await tl.event("V2", "smoking", now - 40 * MIN + 30 * SEC)
    assert await evaluate_outcomes(db, now, batch_size=2) == 5
    assert await evaluate_outcomes(db, now, batch_size=2, lookback=None) == 1
    got = {
        r["intervention_id"]: (r["recurred_10m"], r["recurred_30m"])
        for r in await db.fetch("SELECT * FROM intervention_outcomes")
    }
    # every smoking intervention sees the one event: 30 s, 1.5 min, … 4.5 min after it
    assert got == {old: (False, False), **{i: (True, True) for i in recent}}


async def test_outcomes_are_frozen_and_the_report_uses_them(
    tl: Timeline, db: asyncpg.Connection
) -> None:
    now = T0 + timedelta(hours=1)
    i = await tl.alarmed("V1", "fatigue", T0)
    assert await evaluate_outcomes(db, now) == 1
    await tl.event("V1", "fatigue", T0 + 5 * MIN)  # replayed after the outcome was frozen
    assert await flags(db, i) == [(True, True)]  # the live rule sees it …
    [_, overall] = await report_interventions(db, T0, now, now=now)
    assert (overall.evaluated, overall.recurred_10m, overall.recurred_30m) == (1, 0, 0)  # … not


async def test_run_evaluator_until_stopped(tl: Timeline, db_url: str) -> None:
    i = await tl.alarmed("V1", "fatigue", datetime.now(UTC) - timedelta(hours=1))
    pool = await create_pool(db_url, 1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_evaluator(pool, stop, interval_s=0.05))
    try:
        for _ in range(100):
            if await tl.conn.fetchval("SELECT count(*) FROM intervention_outcomes"):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        await pool.close()
    assert await tl.conn.fetchval("SELECT intervention_id FROM intervention_outcomes") == i


# ---- the report ----


async def build_report_timeline(tl: Timeline, t: datetime) -> None:
    """Issued from ``t``: 3 moderate fatigue voice alerts (V1), 2 general smoking displays
    (V2), and on V3 a severe fatigue at 1.5 h and, 10 minutes before ``t + 2 h``, another
    one whose window is still open at ``t + 2 h``."""
    hour = timedelta(hours=1)
    f1 = await tl.alarmed("V1", "fatigue", t)
    f2 = await tl.alarmed("V1", "fatigue", t + 10 * MIN + 30 * SEC)
    f3 = await tl.alarmed("V1", "fatigue", t + hour)
    await tl.event("V1", "fatigue", t + 10 * MIN)  # f1 at 10 min
    await tl.event("V1", "fatigue", t + 10 * MIN + 30 * SEC + 25 * MIN)  # f2
    for n, delay in enumerate((1.0, 3.0, 2.0)):
        sent = (t, t + 10 * MIN + 30 * SEC, t + hour)[n]
        i = (f1, f2, f3)[n]
        await tl.status(i, "delivered", sent + timedelta(seconds=delay))
        await tl.status(i, "played", sent + timedelta(seconds=delay + 5))
    s1 = await tl.alarmed("V2", "smoking", t, severity="general")
    s2 = await tl.alarmed("V2", "smoking", t + hour, severity="general")
    await tl.conn.execute("UPDATE interventions SET action = 'display' WHERE id IN ($1, $2)",
                          s1, s2)  # fmt: skip
    await tl.status(s2, "played", t + hour + timedelta(seconds=4))  # skipped 'delivered'
    await tl.alarm("V2", "smoking", t + hour + 20 * MIN)  # s2 at 20 min: only the 30-min window
    sev = await tl.alarmed("V3", "fatigue", t + 90 * MIN, severity="severe")
    await tl.status(sev, "delivered", t + 90 * MIN + timedelta(seconds=0.5))
    await tl.alarmed("V3", "fatigue", t + 110 * MIN, severity="severe")  # sev at 20 min


def table_of(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (r.kind, r.severity, r.action, r.interventions, r.delivered, r.median_delivery_s,
         r.evaluated, r.recurred_10m, r.recurred_30m)
        for r in rows
    ]  # fmt: skip


async def test_report_groups_and_rates(tl: Timeline, db: asyncpg.Connection) -> None:
    await build_report_timeline(tl, T0)
    now = T0 + 2 * timedelta(hours=1)
    rows = await report_interventions(db, T0, now, now=now)
    assert table_of(rows) == [
        ("fatigue", "moderate", "voice_alert", 3, 3, 2.0, 3, 1, 2),
        ("fatigue", "severe", "voice_alert", 2, 1, 0.5, 1, 0, 1),
        ("smoking", "general", "display", 2, 1, 4.0, 2, 0, 1),
        (None, None, None, 7, 5, 2.0, 6, 1, 4),
    ]
    moderate, _, smoking, overall = rows
    assert moderate.delivered_share == 1.0 and moderate.recurrence_rate_10m == pytest.approx(1 / 3)
    assert moderate.recurrence_rate_30m == pytest.approx(2 / 3)
    assert smoking.delivered_share == 0.5 and smoking.recurrence_rate_30m == 0.5
    assert overall.overall and overall.delivered_share == pytest.approx(5 / 7)
    assert overall.recurrence_rate_10m == pytest.approx(1 / 6)
    assert overall.recurrence_rate_30m == pytest.approx(4 / 6)

    # the same figures when the outcomes are frozen first
    assert await evaluate_outcomes(db, now, grace=timedelta(0)) == 6
    assert table_of(await report_interventions(db, T0, now, now=now)) == table_of(rows)

    fleet2 = await report_interventions(db, T0, now, "F2", now=now)
    assert table_of(fleet2) == [
        ("smoking", "general", "display", 2, 1, 4.0, 2, 0, 1),
        (None, None, None, 2, 1, 4.0, 2, 0, 1),
    ]
    # [since, until): the first hour only
    first_hour = await report_interventions(db, T0, T0 + timedelta(hours=1), now=now)
    assert [r.interventions for r in first_hour] == [2, 1, 3]
    empty = await report_interventions(db, T0 - timedelta(days=1), T0, now=now)
    assert table_of(empty) == [(None, None, None, 0, 0, None, 0, 0, 0)]
    assert empty[0].delivered_share is None and empty[0].recurrence_rate_30m is None


# ---- the command line ----


def run_report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="telematics")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", "interventions", *argv])
    assert args.func is report_command
    code: int = args.func(args, load_settings())
    return code


@pytest.fixture
async def recent(tl: Timeline, db_url: str, monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The report timeline, starting three hours ago so the default period covers it."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    await build_report_timeline(tl, start)
    monkeypatch.setenv("TELEMATICS_DATABASE_URL", db_url)
    return start


def test_cli_table(recent: datetime, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_report() == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "severity", "action", "interventions", "delivered",
                                "median", "delivery", "s", "evaluated", "recurred", "10m",
                                "rate", "10m", "recurred", "30m", "rate", "30m"]  # fmt: skip
    assert lines[1].split() == ["fatigue", "moderate", "voice_alert", "3", "3", "(100.0%)",
                                "2.00", "3", "1", "33.3%", "2", "66.7%"]  # fmt: skip
    assert set(lines[-2]) == {"-", " "}
    assert lines[-1].split() == ["all", "all", "all", "7", "5", "(71.4%)", "2.00", "7", "1",
                                 "14.3%", "4", "57.1%"]  # fmt: skip
    assert "interventions issued" in err


def test_cli_csv_and_fleet(recent: datetime, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_report("--fleet", "F2", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["kind"], r["severity"], r["action"]) for r in rows] == [
        ("smoking", "general", "display"), ("all", "all", "all")
    ]  # fmt: skip
    assert rows[0] == {
        "kind": "smoking", "severity": "general", "action": "display", "interventions": "2",
        "delivered": "1", "delivered_share": "0.5", "median_delivery_s": "4.0",
        "evaluated": "2", "recurred_10m": "0", "recurrence_rate_10m": "0.0",
        "recurred_30m": "1", "recurrence_rate_30m": "0.5",
    }  # fmt: skip


def test_cli_json_and_period(recent: datetime, capsys: pytest.CaptureFixture[str]) -> None:
    since = (recent + timedelta(hours=1)).isoformat()
    until = (recent + timedelta(hours=2)).isoformat()
    assert run_report("--since", since, "--until", until, "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["since"] == since and doc["until"] == until and doc["fleet"] is None
    assert [(r["kind"], r["severity"], r["interventions"]) for r in doc["rows"]] == [
        ("fatigue", "moderate", 1), ("fatigue", "severe", 2), ("smoking", "general", 1),
        (None, None, 4),
    ]  # fmt: skip
    assert doc["rows"][-1]["overall"] is True and doc["rows"][-1]["recurrence_rate_30m"] == 0.5

    # naive times are UTC; a period without interventions still has its overall row
    assert run_report("--since", "2001-01-01", "--until", "2001-01-02T00:00", "--format",
                      "json") == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["since"] == "2001-01-01T00:00:00+00:00" and len(doc["rows"]) == 1


def test_cli_rejects_bad_times(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEMATICS_DATABASE_URL", db_url)
    with pytest.raises(SystemExit) as exited:
        run_report("--since", "yesterday")
    assert exited.value.code == 2 and "not an ISO 8601" in capsys.readouterr().err
    with pytest.raises(TelematicsError, match="must be after"):
        run_report("--since", "2026-11-02", "--until", "2026-11-01")
