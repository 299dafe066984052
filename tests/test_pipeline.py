"""VehicleProcessor as a pure timeline: items in, store plan out."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from telematics.classify.rules import Rules
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.pipeline import VehicleProcessor, iso_ms
from telematics.protocol.messages import (
    DeviceEvent,
    InterventionAck,
    Rejection,
    Telemetry,
    TireReading,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
COACH = Vehicle("V1", "F", "coach", None, CLASS_PROFILES["coach"].tire_layout, 850.0)


def processor() -> VehicleProcessor:
    ids = (f"id{n}" for n in itertools.count())
    return VehicleProcessor(COACH, Rules(), new_id=lambda: next(ids))


def ev(
    seq: int, kind: str, level: int | None, ts: datetime = NOW, speed: float = 80.0
) -> DeviceEvent:
    return DeviceEvent(seq, ts, kind, level, 31.3, 120.6, speed, "D1", None, None)


def tel(seq: int, ts: datetime = NOW, tires: tuple[TireReading, ...] = ()) -> Telemetry:
    return Telemetry(seq, ts, 31.3, 120.6, 70.0, 90.0, "D1", True, 1000.0, tires, None)


def test_telemetry_rows_and_seq_range() -> None:
    tires = (TireReading("1L", 850.0, 40.0, 90.0), TireReading("1R", 848.0, 41.0, None))
    plan = processor().process([tel(5, tires=tires), tel(6)], [], [], NOW)
    assert [r[1] for r in plan.telemetry] == [5, 6]
    assert [r[3] for r in plan.tires] == ["1L", "1R"]
    assert (plan.min_seq, plan.max_seq) == (5, 6)
    assert plan.alarms == [] and plan.interventions == []


def test_event_alarm_and_intervention() -> None:
    plan = processor().process([ev(1, "fatigue", 2)], [], [], NOW)
    (alarm,) = plan.alarms
    assert alarm[0] == "id0" and alarm[2] == "fatigue" and alarm[4] == "moderate"
    (intervention,) = plan.interventions
    frame = intervention.frame()
    assert frame["cause"] == {"seq": 1, "kind": "fatigue"} and frame["action"] == "voice_alert"
    assert frame["issued_at"] == "2026-11-26T08:00:00.000Z"
    assert plan.severities == ["moderate"]


def test_repeat_grouped_in_place_without_new_intervention() -> None:
    p = processor()
    p.process([ev(1, "yawning", 1)], [], [], NOW)
    later = NOW + timedelta(seconds=30)
    plan = p.process([ev(2, "yawning", 1, ts=later), ev(3, "yawning", 1, ts=later)], [], [], later)
    assert plan.alarms == [] and plan.interventions == []
    (repeat,) = plan.repeats.values()
    assert (repeat.alarm_id, repeat.occurrences, repeat.last_seq) == ("id0", 2, 3)


def test_stale_item_gives_late_alarm_and_no_intervention() -> None:
    old = NOW - timedelta(minutes=3)
    plan = processor().process([ev(1, "collision", None, ts=old)], [], [], NOW)
    assert plan.alarms[0][4] == "severe" and plan.alarms[0][-1] is True  # late
    assert plan.interventions == []


def test_rejections_and_acks_are_carried() -> None:
    rejection = Rejection("invalid_item", "lat: must be between -90 and 90", b"{}", 9)
    plan = processor().process([], [rejection], [InterventionAck("x", "played")], NOW)
    assert plan.rejected == [("V1", 9, NOW, "invalid_item", rejection.message, b"{}")]
    assert plan.device_statuses == [("x", "played", NOW)]
    assert plan.max_seq == 9


def test_iso_ms() -> None:
    assert iso_ms(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
