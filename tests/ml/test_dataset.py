"""`ml dataset` against the real database: replayed features and outcome labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from ml.dataset import export_dataset
from ml.rows import read_csv, write_csv
from tests.helpers import add_vehicle

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Suzhou


async def _telemetry(db: asyncpg.Connection, vid: str, minutes: int, driver: str) -> None:
    await db.execute("SELECT ensure_month_partitions($1)", T0.date().replace(day=1))
    rows = [
        (vid, i + 1, T0 + timedelta(seconds=10 * i), T0, 31.30, 120.60 + i * 1e-4, 60.0, driver)
        for i in range(minutes * 6)
    ]
    await db.copy_records_to_table(
        "telemetry", records=rows,
        columns=["vehicle_id", "seq", "ts", "received_at", "lat", "lon", "speed_kmh", "driver_id"],
    )  # fmt: skip


async def _event(db: asyncpg.Connection, vid: str, seq: int, ts: datetime, kind: str) -> None:
    await db.execute(
        """INSERT INTO events (vehicle_id, seq, ts, received_at, kind, level, lat, lon,
                               speed_kmh, driver_id) VALUES ($1, $2, $3, $3, $4, 2, 31.3,
                               120.6, 80, 'D-1')""",
        vid, seq, ts, kind,
    )  # fmt: skip


async def _alarm(db: asyncpg.Connection, aid: str, vid: str, seq: int, ts: datetime,
                 kind: str) -> None:  # fmt: skip
    await db.execute(
        """INSERT INTO alarms (id, vehicle_id, kind, key, severity, reason, derived, level,
                               first_seq, first_ts, last_seq, last_ts, lat, lon, speed_kmh,
                               rules_version)
           VALUES ($1, $2, $3, $3, 'moderate', 'test', false, 2, $4, $5, $4, $5, 31.3, 120.6,
                   80, 'test')""",
        aid, vid, kind, seq, ts,
    )  # fmt: skip


async def test_export_replays_features_and_labels(db_url: str, tmp_path: Path) -> None:
    await add_vehicle(db_url, "V-A", "hazmat", fleet="F1")
    await add_vehicle(db_url, "V-B", "coach", fleet="F2")
    db = await asyncpg.connect(db_url)
    try:
        await _telemetry(db, "V-A", 120, "D-1")
        await _telemetry(db, "V-B", 120, "D-2")
        t1, t2 = T0 + timedelta(minutes=100), T0 + timedelta(minutes=105)
        # V-A: two fatigue alarms, then a collision 10 min after the second
        await _event(db, "V-A", 10_001, t1, "fatigue")
        await _event(db, "V-A", 10_002, t2, "fatigue")
        await _event(db, "V-A", 10_003, t2 + timedelta(minutes=10), "collision")
        await _alarm(db, "a1", "V-A", 10_001, t1, "fatigue")
        await _alarm(db, "a3", "V-A", 10_003, t2 + timedelta(minutes=10), "collision")
        # V-B: a phone call, its collision 40 min later: outside the 30-minute horizon
        await _event(db, "V-B", 10_001, t1, "phone_call")
        await _event(db, "V-B", 10_002, t1 + timedelta(minutes=40), "collision")
        await _alarm(db, "b1", "V-B", 10_001, t1, "phone_call")
        await _alarm(db, "b2", "V-B", 10_002, t1 + timedelta(minutes=40), "collision")
        # an alarm whose items were never stored
        await _alarm(db, "a9", "V-A", 99_999, t1, "smoking")
        rows, unmatched = await export_dataset(db, T0, T0 + timedelta(hours=3))
        # the second fatigue alarm occurrence is part of a1; a new alarm for it:
        await _alarm(db, "a2", "V-A", 10_002, t2, "fatigue")
        rows2, _ = await export_dataset(db, T0, T0 + timedelta(hours=3), fleet="F1")
    finally:
        await db.close()

    by_id = {r.alarm_id: r for r in rows}
    assert set(by_id) == {"a1", "b1"} and unmatched == 1  # outcomes are never rows
    a1, b1 = by_id["a1"], by_id["b1"]
    assert a1.label and not b1.label  # b1's collision is 40 min later
    assert a1.input.kind == "fatigue" and a1.input.level == 2
    assert a1.input.vehicle_class == "hazmat" and a1.fleet_id == "F1"
    assert a1.driver_id == "D-1"
    assert abs(a1.input.continuous_driving_s - 100 * 60) <= 20  # replayed telemetry
    assert a1.input.recurrence == 1 and a1.input.speed_kmh == 80.0
    assert a1.input.driver_alarms == 1 and abs(a1.input.driver_hours - 100 / 60) < 0.01
    assert not a1.input.night

    a2 = {r.alarm_id: r for r in rows2}["a2"]
    assert {r.alarm_id for r in rows2} == {"a1", "a2"}  # fleet F1 only
    assert a2.label and a2.input.recurrence == 2 and a2.input.recent_alarms == 2

    path = tmp_path / "alarms.csv"
    assert write_csv(path, rows2) == 2
    back = {r.alarm_id: r for r in read_csv(path)}
    assert back["a2"] == a2


async def test_a_paid_claim_labels_the_alarms_before_it(db_url: str) -> None:
    """Claim outcomes posted through the insurer API become positives; a denied claim
    is no evidence."""
    await add_vehicle(db_url, "V-C", "coach", fleet="F3")
    db = await asyncpg.connect(db_url)
    try:
        await _telemetry(db, "V-C", 120, "D-3")
        t1 = T0 + timedelta(minutes=100)
        await _event(db, "V-C", 10_001, t1, "phone_call")
        await _alarm(db, "c1", "V-C", 10_001, t1, "phone_call")
        await _event(db, "V-C", 10_002, t1 + timedelta(minutes=5), "smoking")
        await _alarm(db, "c2", "V-C", 10_002, t1 + timedelta(minutes=5), "smoking")
        await db.execute("INSERT INTO insurers (id, name) VALUES ('ins', 'Insurer')")

        async def claim(claim_id: str, at: datetime, outcome: str) -> None:
            await db.execute(
                """INSERT INTO claims (id, insurer_id, vehicle_id, occurred_at, description,
                                       idempotency_key, request_hash)
                   VALUES ($1, 'ins', 'V-C', $2, 'test', $1, '\\x00'::bytea)""",
                claim_id, at,
            )  # fmt: skip
            await db.execute(
                """INSERT INTO claim_outcomes (claim_id, insurer_id, vehicle_id, occurred_at,
                                               outcome, alarm_ids)
                   VALUES ($1, 'ins', 'V-C', $2, $3, '{}')""",
                claim_id, at, outcome,
            )  # fmt: skip

        rows, _ = await export_dataset(db, T0, T0 + timedelta(hours=3))
        assert not any(r.label for r in rows)
        await claim("k1", t1 + timedelta(minutes=3), "denied")
        rows, _ = await export_dataset(db, T0, T0 + timedelta(hours=3))
        assert not any(r.label for r in rows)
        await claim("k2", t1 + timedelta(minutes=3), "paid")  # after c1, before c2
        rows, _ = await export_dataset(db, T0, T0 + timedelta(hours=3))
        assert {r.alarm_id: r.label for r in rows} == {"c1": True, "c2": False}
    finally:
        await db.close()
