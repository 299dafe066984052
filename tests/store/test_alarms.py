"""Alarm lifecycle, dispatcher tasks and escalation against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest

from telematics.intervene.escalation import LifecycleWrites, actions_for, load_policy
from telematics.intervene.lifecycle import (
    AlarmState,
    Transition,
    condition_ended,
    occur,
    open_alarm,
)
from telematics.store import alarms as store
from telematics.store.migrate import SQL_DIR, migrate
from tests.helpers import add_vehicle, with_database

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
POLICY = load_policy()
_seq = itertools.count(1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def insert_alarm(conn: asyncpg.Connection, state: AlarmState) -> None:
    """What the batch writer's COPY does for a new alarm."""
    seq = next(_seq)
    await conn.execute(
        """INSERT INTO alarms (id, vehicle_id, kind, key, severity, reason, derived, level,
                               tire_pos, first_seq, first_ts, last_seq, last_ts, occurrences,
                               lat, lon, speed_kmh, rules_version, late)
           VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10, $9, $11, $12,
                   31.3, 120.6, 80, 'test', false)""",
        state.id,
        state.vehicle_id,
        state.kind,
        state.key,
        state.severity,
        state.reason,
        state.derived,
        state.tire_pos,
        seq,
        state.opened_at,
        state.last_seen_at,
        state.occurrences,
    )


async def commit_new(
    conn: asyncpg.Connection,
    alarm_id: str,
    severity: str,
    t: float = 0,
    kind: str = "fatigue",
    vehicle: str = "V1",
) -> Transition:
    """Like the writer: the alarm and its lifecycle rows in one transaction."""
    opened = open_alarm(alarm_id, vehicle, kind, kind, severity, at(t), reason=f"{kind} test")
    writes = LifecycleWrites()
    writes.add_transition(opened)
    writes.add_actions(actions_for(opened, at(t), policy=POLICY, new_id=lambda: f"K-{alarm_id}"))
    async with conn.transaction():
        await insert_alarm(conn, opened.state)
        await store.write_lifecycle(conn, writes, now=at(t), policy=POLICY)
    return opened


async def test_new_alarm_commits_audit_task_and_insurer_once(
    db_url: str, db: asyncpg.Connection
) -> None:
    await add_vehicle(db_url, "V1")
    opened = await commit_new(db, "A1", "severe")
    writes = LifecycleWrites()
    writes.add_transition(opened)
    writes.add_actions(actions_for(opened, T0, policy=POLICY, new_id=lambda: "K-other"))
    await store.write_lifecycle(db, writes, now=T0, policy=POLICY)  # a retried flush
    ghost = LifecycleWrites()  # rows of an alarm the writer dropped: skipped, not refused
    ghost.add_transition(open_alarm("GONE", "V1", "fatigue", "fatigue", "severe", T0))
    ghost.add_actions(actions_for(open_alarm("GONE", "V1", "f", "f", "severe", T0), T0))
    await store.write_lifecycle(db, ghost, now=T0, policy=POLICY)

    detail = await store.alarm_with_audit(db, "A1")
    assert detail.alarm.status == "ACTIVE_UNACK" and detail.alarm.severity == "severe"
    assert [(e.action, e.actor) for e in detail.audit] == [("opened", "system")]
    assert detail.task is not None and detail.task.id == "K-A1"
    assert detail.task.next_escalation_at == T0 and detail.task.due_at == at(120)
    outbox = await db.fetch("SELECT alarm_id, payload FROM insurer_outbox")
    assert [r["alarm_id"] for r in outbox] == ["A1"]
    assert orjson.loads(outbox[0]["payload"])["severity"] == "severe"
    assert await db.fetchval("SELECT count(*) FROM dispatch_tasks") == 1


async def test_dispatcher_actions_are_audited_and_ack_stops_escalation(
    db_url: str, db: asyncpg.Connection
) -> None:
    await add_vehicle(db_url, "V1")
    await commit_new(db, "A1", "severe")
    assert [s.target for s in await store.fire_due_escalations(db, T0, policy=POLICY)] == [
        "shift_supervisor"
    ]
    await store.assign_alarm(db, "A1", "dispatcher.li", "safety.zhang", now=at(10))
    await store.comment_alarm(db, "A1", "safety.zhang", "Calling the driver.", now=at(20))
    state = await store.acknowledge_alarm(db, "A1", "safety.zhang", now=at(30), policy=POLICY)
    assert state.status == "ACTIVE_ACK" and state.acked_by == "safety.zhang"
    assert await store.fire_due_escalations(db, at(3600), policy=POLICY) == []
    state = await store.clear_alarm(db, "A1", "safety.zhang", "driver stopped", now=at(40))
    assert state.status == "CLEARED_ACK"

    detail = await store.alarm_with_audit(db, "A1")
    assert detail.alarm == state
    assert [(e.action, e.actor, e.at) for e in detail.audit] == [
        ("opened", "system", T0),
        ("assigned", "dispatcher.li", at(10)),
        ("commented", "safety.zhang", at(20)),
        ("acknowledged", "safety.zhang", at(30)),
        ("cleared", "safety.zhang", at(40)),
    ]
    assert detail.audit[2].detail == {"text": "Calling the driver."}
    assert detail.task is not None and detail.task.status == "closed"  # the alarm cleared
    assert detail.task.acknowledged_by == "safety.zhang" and detail.task.closed_at == at(40)
    assert [(s.level, s.target) for s in detail.escalations] == [(1, "shift_supervisor")]
    with pytest.raises(store.UnknownAlarm):
        await store.acknowledge_alarm(db, "nope", "li")


async def test_escalation_survives_a_restart_and_fires_missed_steps_once(
    db_url: str, db: asyncpg.Connection
) -> None:
    await add_vehicle(db_url, "V1")
    await commit_new(db, "A1", "severe")
    await commit_new(db, "A2", "moderate", kind="phone_call")
    fired = await store.fire_due_escalations(db, at(1), policy=POLICY)
    assert [(s.alarm_id, s.target) for s in fired] == [("A1", "shift_supervisor")]
    await db.close()  # the server dies; it comes back 15 minutes later with new connections

    first, second = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        due = await store.due_escalations(first, at(900), policy=POLICY)
        assert [(s.alarm_id, s.level, s.target) for s in due] == [
            ("A1", 2, "safety_manager"),
            ("A1", 3, "fleet_director"),
            ("A2", 1, "shift_supervisor"),
        ]
        # Two workers' timers tick at once: every step fires once in total.
        a, b = await asyncio.gather(
            store.fire_due_escalations(first, at(900), policy=POLICY),
            store.fire_due_escalations(second, at(900), policy=POLICY),
        )
        fired = sorted(a + b, key=lambda s: (s.alarm_id, s.level))
        assert [(s.alarm_id, s.level, s.target, s.due_at) for s in fired] == [
            ("A1", 2, "safety_manager", at(120)),
            ("A1", 3, "fleet_director", at(600)),
            ("A2", 1, "shift_supervisor", at(300)),
        ]
        assert all(s.late for s in fired)
        assert await store.fire_due_escalations(first, at(5000), policy=POLICY) == []
        assert await store.due_escalations(first, at(5000), policy=POLICY) == []
        rows = await first.fetch("SELECT task_id, level, target FROM escalations ORDER BY id")
        assert len(rows) == 4
    finally:
        await first.close()
        await second.close()


async def test_record_escalation_is_exactly_once(db_url: str, db: asyncpg.Connection) -> None:
    await add_vehicle(db_url, "V1")
    await commit_new(db, "A1", "severe")
    steps = await store.due_escalations(db, at(130), policy=POLICY)
    assert [s.level for s in steps] == [1, 2]
    assert not await store.record_escalation(db, steps[1], policy=POLICY)  # out of order
    assert await store.record_escalation(db, steps[0], policy=POLICY)
    assert not await store.record_escalation(db, steps[0], policy=POLICY)
    assert await store.record_escalation(db, steps[1], policy=POLICY)
    task = await store.acknowledge_task(db, "K-A1", "dispatcher.li", now=at(140), policy=POLICY)
    assert task.status == "acknowledged" and task.next_escalation_at is None
    alarm = (await store.alarm_with_audit(db, "A1")).alarm
    assert alarm.acknowledged and alarm.acked_by == "dispatcher.li"


async def test_rise_upgrades_task_and_voids_acknowledgement(
    db_url: str, db: asyncpg.Connection
) -> None:
    await add_vehicle(db_url, "V1")
    opened = await commit_new(db, "A1", "moderate")
    await store.acknowledge_alarm(db, "A1", "dispatcher.li", now=at(30), policy=POLICY)
    risen = occur(opened.state, "severe", at(60), reason="fatigue L2 at night")
    writes = LifecycleWrites()
    writes.add_transition(risen)
    writes.add_actions(actions_for(risen, at(60), policy=POLICY))
    async with db.transaction():
        await db.execute("UPDATE alarms SET severity = 'severe' WHERE id = 'A1'")  # the writer
        await store.write_lifecycle(db, writes, now=at(60), policy=POLICY)
    detail = await store.alarm_with_audit(db, "A1")
    assert detail.alarm.status == "ACTIVE_UNACK"
    assert [e.action for e in detail.audit] == [
        "opened",
        "acknowledged",
        "severity_raised",
        "unacknowledged",
    ]
    assert detail.task is not None
    assert (detail.task.severity, detail.task.status, detail.task.next_escalation_at) == (
        "severe",
        "open",
        at(60),
    )
    fired = await store.fire_due_escalations(db, at(180), policy=POLICY)
    assert [(s.severity, s.target) for s in fired] == [
        ("severe", "shift_supervisor"),
        ("severe", "safety_manager"),
    ]
    assert await db.fetchval("SELECT count(*) FROM insurer_outbox") == 1


async def test_auto_clear_and_condition_end(db_url: str, db: asyncpg.Connection) -> None:
    await add_vehicle(db_url, "V1")
    await commit_new(db, "A1", "moderate", kind="phone_call")  # clears after 5 min absent
    await commit_new(db, "A2", "severe", kind="collision")  # never by itself
    await commit_new(db, "A3", "general", kind="fatigue", t=200)  # 15 min
    tire = open_alarm(
        "A4", "V1", "tire_pressure_low:2LO", "tire_pressure_low", "moderate", T0, derived=True
    )
    await insert_alarm(db, tire.state)
    assert await store.auto_clear_alarms(db, at(299), policy=POLICY) == []
    cleared = await store.auto_clear_alarms(db, at(3600), policy=POLICY)
    assert sorted((s.id, s.cleared_at) for s in cleared) == [
        ("A1", at(300)),
        ("A3", at(200 + 900)),
    ]
    assert await store.auto_clear_alarms(db, at(7200), policy=POLICY) == []
    task = (await store.alarm_with_audit(db, "A1")).task
    assert task is not None and task.status == "closed"

    # The tire is back to normal: the pipeline sends a clear request with its flush.
    writes = LifecycleWrites()
    writes.add_transition(condition_ended(tire.state, at(500)))
    await store.write_lifecycle(db, writes, now=at(500), policy=POLICY)
    await store.write_lifecycle(db, writes, now=at(500), policy=POLICY)  # idempotent
    detail = await store.alarm_with_audit(db, "A4")
    assert detail.alarm.clear_reason == "condition_ended" and not detail.alarm.active
    assert [e.action for e in detail.audit] == ["cleared"]
    assert [a.id for a in await store.active_alarms_of(db, "V1")] == ["A2"]


async def test_open_alarms_most_severe_then_oldest(db_url: str, db: asyncpg.Connection) -> None:
    await add_vehicle(db_url, "V1", fleet="F1")
    await add_vehicle(db_url, "V2", fleet="F2")
    await commit_new(db, "G1", "general", t=0, kind="smoking")
    await commit_new(db, "M2", "moderate", t=20, kind="phone_call")
    await commit_new(db, "M1", "moderate", t=10, kind="distraction", vehicle="V2")
    await commit_new(db, "S1", "severe", t=30, kind="collision")
    await store.clear_alarm(db, "G1", "dispatcher.li", "noise", now=at(40))
    listed = await store.open_alarms(db)
    assert [a.id for a in listed] == ["S1", "M1", "M2"]
    assert [a.id for a in await store.open_alarms(db, fleet_ids=["F1"])] == ["S1", "M2"]
    assert [a.id for a in await store.open_alarms(db, severity="moderate")] == ["M1", "M2"]
    assert [a.id for a in await store.open_alarms(db, min_severity="severe")] == ["S1"]
    with_unacked = await store.open_alarms(db, include_cleared_unacked=True)
    assert [a.id for a in with_unacked] == ["S1", "M1", "M2", "G1"]
    async with db.transaction():  # the indexes serve the list and the timer's query
        await db.execute("SET LOCAL enable_seqscan = off")
        for query, index in (
            (
                "SELECT id FROM alarms WHERE active ORDER BY severity_rank DESC, first_ts LIMIT 5",
                "alarms_open_by_severity",
            ),
            (
                "SELECT id FROM dispatch_tasks WHERE status = 'open' AND next_escalation_at"
                " <= now() ORDER BY next_escalation_at LIMIT 100",
                "dispatch_tasks_due",
            ),
        ):
            plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + query))
            assert index in plan, plan


async def test_concurrent_dispatchers_are_serialised(db_url: str, db: asyncpg.Connection) -> None:
    await add_vehicle(db_url, "V1")
    await commit_new(db, "A1", "severe")
    conns = [await asyncpg.connect(db_url) for _ in range(3)]
    try:
        await asyncio.gather(
            *(
                store.acknowledge_alarm(c, "A1", f"dispatcher.{i}", now=at(5), policy=POLICY)
                for i, c in enumerate(conns)
            )
        )
    finally:
        for c in conns:
            await c.close()
    acks = await db.fetch("SELECT actor FROM alarm_audit WHERE action = 'acknowledged'")
    assert len(acks) == 1
    task = (await store.alarm_with_audit(db, "A1")).task
    assert task is not None and task.acknowledged_by == acks[0]["actor"]


async def test_migration_keeps_old_alarms_and_opens_only_the_newest(
    admin_url: str, tmp_path: Path
) -> None:
    """Alarms stored before 004 keep every column; superseded ones come out cleared."""
    for path in sorted(SQL_DIR.glob("00[1-3]_*.sql")):
        shutil.copy(path, tmp_path / path.name)
    name = f"telematics_mig_{os.getpid()}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    url = with_database(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, tmp_path)
        await conn.execute("INSERT INTO fleets (id, name) VALUES ('F1', 'F1')")
        await conn.execute(
            """INSERT INTO vehicles (id, fleet_id, vehicle_class, tire_layout, placard_kpa)
               VALUES ('V1', 'F1', 'coach', ARRAY['1LO'], 800)"""
        )
        for alarm_id, t in (("OLD", 0), ("NEW", 600)):
            state = open_alarm(alarm_id, "V1", "fatigue", "fatigue", "moderate", at(t)).state
            await insert_alarm(conn, state)
        shutil.copy(SQL_DIR / "004_alarm_lifecycle.sql", tmp_path)
        assert await migrate(conn, tmp_path) == ["004_alarm_lifecycle.sql"]
        await migrate(conn)  # the later ones too: today's code reads their columns
        old = (await store.alarm_with_audit(conn, "OLD")).alarm
        new = await store.alarm_with_audit(conn, "NEW")
        assert old.status == "CLEARED_UNACK" and old.clear_reason == "superseded"
        assert new.alarm.status == "ACTIVE_UNACK" and new.alarm.severity == "moderate"
        assert [e.action for e in new.audit] == ["opened"]
        assert [a.id for a in await store.open_alarms(conn)] == ["NEW"]
    finally:
        await conn.close()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
