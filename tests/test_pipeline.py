"""VehicleProcessor as a pure timeline: items in, store plan out."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from shapely.geometry import Polygon

from telematics.classify.context import load_policy
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.geo.index import ZoneIndex
from telematics.geo.zones import Zone, offset
from telematics.intervene.lifecycle import AlarmState
from telematics.pipeline import StorePlan, VehicleProcessor, ZoneSource, iso_ms
from telematics.protocol.messages import (
    DeviceEvent,
    InterventionAck,
    Rejection,
    Telemetry,
    TireReading,
)
from telematics.store.writer import ALARM_COLUMNS

POLICY = load_policy()
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # 16:00 in Suzhou: daytime
COACH = Vehicle("V1", "F", "coach", None, CLASS_PROFILES["coach"].tire_layout, 850.0)
HAZMAT = Vehicle("H1", "F", "hazmat", None, CLASS_PROFILES["hazmat"].tire_layout, 850.0)
LON, LAT = 120.6, 31.3
MPS_120 = 120 / 3.6


def processor(vehicle: Vehicle = COACH, zones: ZoneSource | None = None) -> VehicleProcessor:
    ids = (f"id{n}" for n in itertools.count())
    return VehicleProcessor(vehicle, POLICY, zones=zones, new_id=lambda: next(ids))


def ev(
    seq: int, kind: str, level: int | None, ts: datetime = NOW, speed: float = 80.0
) -> DeviceEvent:
    return DeviceEvent(seq, ts, kind, level, 31.3, 120.6, speed, "D1", None, None)


def tel(
    seq: int,
    ts: datetime = NOW,
    tires: tuple[TireReading, ...] = (),
    speed: float = 70.0,
    lon: float = 120.6,
    lat: float = 31.3,
) -> Telemetry:
    return Telemetry(seq, ts, lat, lon, speed, 90.0, "D1", True, 1000.0, tires, None)


def square(zone_id: str, kind: str, east_m: float, half_m: float) -> Zone:
    corners = [
        offset(LON, LAT, east_m + dx, dy)
        for dx, dy in ((-half_m, -half_m), (half_m, -half_m), (half_m, half_m), (-half_m, half_m))
    ]
    return Zone(zone_id, kind, zone_id, Polygon(corners))


def drive_east(p: VehicleProcessor, east0: float, n: int, seq0: int = 1) -> StorePlan:
    """``n`` fixes at 1 Hz and 120 km/h heading east from ``east0`` metres, one frame;
    the fix of seq ``s`` is taken at ``NOW + s`` seconds."""
    items: list[Telemetry | DeviceEvent] = []
    for i in range(n):
        lon, lat = offset(LON, LAT, east0 + i * MPS_120, 0)
        ts = NOW + timedelta(seconds=seq0 + i)
        items.append(tel(seq0 + i, ts, speed=120.0, lon=lon, lat=lat))
    return p.process(items, [], [], NOW + timedelta(seconds=seq0 + n))


def test_telemetry_rows_and_seq_range() -> None:
    tires = (TireReading("1L", 850.0, 40.0, 90.0), TireReading("1R", 848.0, 41.0, None))
    plan = processor().process([tel(5, tires=tires), tel(6)], [], [], NOW)
    assert [r[1] for r in plan.telemetry] == [5, 6]
    assert [r[3] for r in plan.tires] == ["1L", "1R"]
    assert (plan.min_seq, plan.max_seq) == (5, 6)
    assert plan.alarms == [] and plan.interventions == [] and not plan.lifecycle


def test_event_alarm_intervention_and_task() -> None:
    plan = processor().process([ev(1, "fatigue", 2)], [], [], NOW)
    (alarm,) = plan.alarms
    assert alarm[0] == "id0" and alarm[2] == "fatigue" and alarm[4] == "moderate"
    assert alarm[17] == POLICY.version  # rules_version: the risk policy's
    (intervention,) = plan.interventions
    frame = intervention.frame()
    assert frame["cause"] == {"seq": 1, "kind": "fatigue"} and frame["action"] == "voice_alert"
    assert frame["issued_at"] == "2026-11-26T08:00:00.000Z"
    assert plan.severities == ["moderate"]
    # moderate: a dispatcher task to acknowledge within 5 minutes, no insurer notice
    assert [a.action for a in plan.lifecycle.audit] == ["opened"]
    (task,) = plan.lifecycle.tasks
    assert task.alarm_id == "id0" and task.due_at == NOW + timedelta(seconds=300)
    assert plan.lifecycle.insurer == []


def test_intervention_id_depends_only_on_its_cause() -> None:
    """Interventions leave before the commit: a server that died before committing hands
    the replayed item to a fresh processor, which must issue the very same id."""
    first = processor().process([ev(1, "fatigue", 2)], [], [], NOW).interventions[0]
    uuid_ids = VehicleProcessor(COACH, POLICY)  # random alarm ids, unlike processor()
    replayed = uuid_ids.process([ev(1, "fatigue", 2)], [], [], NOW + timedelta(seconds=30))
    assert replayed.interventions[0].id == first.id
    other_seq = processor().process([ev(2, "fatigue", 2)], [], [], NOW).interventions[0]
    other_vehicle = processor(HAZMAT).process([ev(1, "fatigue", 2)], [], [], NOW)
    assert len({first.id, other_seq.id, other_vehicle.interventions[0].id}) == 3


def test_general_is_a_voice_alert_without_a_task() -> None:
    plan = processor().process([ev(1, "yawning", 1)], [], [], NOW)
    assert plan.alarms[0][4] == "general"
    assert [i.action for i in plan.interventions] == ["voice_alert"]
    assert plan.lifecycle.tasks == [] and plan.lifecycle.insurer == []


def test_severe_gets_task_and_insurer_notice() -> None:
    plan = processor().process([ev(1, "collision", None)], [], [], NOW)
    assert plan.alarms[0][4] == "severe"
    (task,) = plan.lifecycle.tasks
    assert task.severity == "severe" and task.next_escalation_at == NOW  # shift supervisor now
    (notice,) = plan.lifecycle.insurer
    assert notice.alarm_id == "id0" and notice.payload["kind"] == "collision"


def test_repeat_extends_in_place_without_new_intervention() -> None:
    p = processor()
    p.process([ev(1, "yawning", 1)], [], [], NOW)
    later = NOW + timedelta(seconds=30)
    plan = p.process([ev(2, "yawning", 1, ts=later), ev(3, "yawning", 1, ts=later)], [], [], later)
    assert plan.alarms == [] and plan.interventions == [] and not plan.lifecycle
    (repeat,) = plan.repeats.values()
    assert (repeat.alarm_id, repeat.occurrences, repeat.last_seq) == ("id0", 2, 3)


def test_rise_in_place_alerts_again_and_upgrades_the_task() -> None:
    p = processor()
    p.process([ev(1, "smoking", 1)], [], [], NOW)
    later = NOW + timedelta(seconds=20)
    plan = p.process([ev(2, "smoking", 2, ts=later, speed=90.0)], [], [], later)
    assert plan.alarms == []
    assert plan.repeats["id0"].severity == "moderate"
    assert [(i.alarm_id, i.severity) for i in plan.interventions] == [("id0", "moderate")]
    assert [a.action for a in plan.lifecycle.audit] == ["severity_raised"]
    (upgrade,) = plan.lifecycle.upgrades
    assert (upgrade.alarm_id, upgrade.previous_severity, upgrade.severity) == (
        "id0",
        "general",
        "moderate",
    )


def test_lapsed_alarm_is_cleared_and_a_new_one_opens() -> None:
    p = processor()
    p.process([ev(1, "yawning", 1)], [], [], NOW)
    later = NOW + timedelta(minutes=20)  # yawning clears after 15 minutes without
    plan = p.process([ev(2, "yawning", 1, ts=later)], [], [], later)
    (alarm,) = plan.alarms
    assert alarm[0] != "id0" and p.alarms["yawning"].id == alarm[0]
    (clear,) = plan.lifecycle.clears
    assert clear.alarm_id == "id0" and clear.at == NOW + timedelta(minutes=15)
    assert [i.alarm_id for i in plan.interventions] == [alarm[0]]


def test_stale_item_gives_late_alarm_and_no_intervention() -> None:
    old = NOW - timedelta(minutes=3)
    plan = processor().process([ev(1, "collision", None, ts=old)], [], [], NOW)
    row = dict(zip(ALARM_COLUMNS, plan.alarms[0], strict=True))
    assert row["severity"] == "severe" and row["late"] is True
    assert plan.interventions == []
    # the dispatcher and the insurer still hear of it
    assert len(plan.lifecycle.tasks) == 1 and len(plan.lifecycle.insurer) == 1


def test_restored_alarm_is_extended_not_reopened() -> None:
    p = processor()
    p.restore(
        [
            AlarmState("A1", "V1", "fatigue", "fatigue", "moderate", NOW, NOW),
            AlarmState("A0", "V1", "smoking", "smoking", "general", NOW, NOW, active=False),
        ]
    )
    later = NOW + timedelta(minutes=1)
    plan = p.process([ev(1, "fatigue", 2, ts=later)], [], [], later)
    assert plan.alarms == [] and list(plan.repeats) == ["A1"]
    plan = p.process([ev(2, "smoking", 1, ts=later)], [], [], later)  # not restored: cleared
    assert [a[0] for a in plan.alarms] == ["id0"]


def test_forget_makes_the_next_occurrence_a_new_alarm() -> None:
    p = processor()
    p.process([ev(1, "fatigue", 2)], [], [], NOW)
    assert not p.forget("fatigue", "someone else's")
    assert p.forget("fatigue", "id0")
    plan = p.process([ev(2, "fatigue", 2)], [], [], NOW)
    (alarm,) = plan.alarms
    assert alarm[0] != "id0" and len(plan.interventions) == 1


def _tires(kpa: float, temp_c: float = 40.0) -> tuple[TireReading, ...]:
    return (TireReading("1L", kpa, temp_c, None),)  # alone on its axle: no imbalance


def test_tire_condition_ended_clears_its_alarm() -> None:
    p = processor()
    plan = p.process([tel(1, tires=_tires(600.0))], [], [], NOW)
    (alarm,) = plan.alarms
    assert alarm[3] == "tire_pressure_low:1L" and alarm[6] is True  # derived
    later = NOW + timedelta(seconds=30)
    plan = p.process([tel(2, ts=later, tires=_tires(850.0))], [], [], later)
    (clear,) = plan.lifecycle.clears
    assert (clear.alarm_id, clear.reason, clear.at) == (alarm[0], "condition_ended", later)
    assert not p.alarms["tire_pressure_low:1L"].active
    again = NOW + timedelta(seconds=60)
    plan = p.process([tel(3, ts=again, tires=_tires(600.0))], [], [], again)
    assert [a[3] for a in plan.alarms] == ["tire_pressure_low:1L"]  # a new episode
    assert plan.alarms[0][0] != alarm[0]


def test_restored_tire_condition_goes_on_and_ends() -> None:
    """After a restart: the low tire is the same episode (no new alarm), then it ends."""
    p = processor()
    low = AlarmState(
        "T1", "V1", "tire_pressure_low:1L", "tire_pressure_low", "general", NOW, NOW,
        derived=True, tire_pos="1L",
    )  # fmt: skip
    p.restore([low])
    later = NOW + timedelta(seconds=30)
    plan = p.process([tel(1, ts=later, tires=_tires(600.0))], [], [], later)
    assert plan.alarms == [] and plan.interventions == []
    done = NOW + timedelta(seconds=60)
    plan = p.process([tel(2, ts=done, tires=_tires(850.0))], [], [], done)
    assert [(c.alarm_id, c.reason) for c in plan.lifecycle.clears] == [("T1", "condition_ended")]


def test_zone_transitions_and_hazmat_alarm_through_a_small_zone() -> None:
    zones = ZoneSource(ZoneIndex([square("HZ", "hazmat_restricted", 0, 25)], "1"))
    p = processor(HAZMAT, zones)
    plan = drive_east(p, -10 * MPS_120 - 16.7, 20)
    got = [(r[1], r[2], r[4]) for r in plan.zone_transitions]
    assert [(z, t) for z, t, _ in got] == [("HZ", "enter"), ("HZ", "exit")]
    hazmat = [a for a in plan.alarms if a[2] == "hazmat_restricted_zone"]
    assert [a[3] for a in hazmat] == ["hazmat_restricted_zone:HZ"]
    assert hazmat[0][9] == got[0][2]  # raised by the fix that revealed the entry


def test_zone_edits_reach_the_tracker_at_the_next_frame() -> None:
    zones = ZoneSource()
    p = processor(COACH, zones)
    drive_east(p, -2000, 3)  # no zones yet
    zones.index = ZoneIndex([square("DEPOT", "depot", -1800, 300)], "2")
    plan = drive_east(p, -1900, 2, seq0=4)
    assert [(r[1], r[2]) for r in plan.zone_transitions] == [("DEPOT", "enter")]
    assert p.tracker.index is zones.index


def test_rejections_and_acks_are_carried() -> None:
    rejection = Rejection("invalid_item", "lat: must be between -90 and 90", b"{}", 9)
    plan = processor().process([], [rejection], [InterventionAck("x", "played")], NOW)
    assert plan.rejected == [("V1", 9, NOW, "invalid_item", rejection.message, b"{}")]
    assert plan.device_statuses == [("x", "played", NOW)]
    assert plan.max_seq == 9


def test_iso_ms() -> None:
    assert iso_ms(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
