"""VehicleState fed timelines: every derived event, the driving clock, counts and grading."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from telematics.classify.alarms import AlarmCandidate
from telematics.classify.context import Graded, GradingInput, load_policy
from telematics.classify.risk_policy import RiskPolicy
from telematics.errors import UsageError
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.geo.context import NO_ZONES, ZoneContext, ZoneRef
from telematics.protocol.messages import DeviceEvent, Telemetry, TireReading
from telematics.state.counts import RecentCounts
from telematics.state.vehicle import VehicleState

POLICY = load_policy()
# 10:00 in Suzhou (UTC+8): daytime, so the night factor stays out unless a test wants it.
T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
M_PER_DEG_LAT = 110_574.0

SCHOOL = ZoneRef("z-school", "school", "Shiquan St. primary", 30.0)
RESTRICTED = ZoneRef("z-hr", "hazmat_restricted", "Jinji Lake tunnel")


def vehicle(cls: str = "coach") -> Vehicle:
    p = CLASS_PROFILES[cls]
    return Vehicle(f"SU-{cls}", "F-1", cls, None, p.tire_layout, p.placard_kpa)


class Run:
    """A VehicleState and a clock; positions follow the speeds so no fix looks like a jump."""

    def __init__(self, cls: str = "coach", policy: RiskPolicy = POLICY, t0: datetime = T0) -> None:
        self.state = VehicleState(vehicle(cls), policy)
        self.t0 = t0
        self.seq = 0
        self.lat = 31.3
        self.last: tuple[float, float] | None = None  # t, speed

    def fix(
        self,
        t_s: float,
        speed: float,
        zones: ZoneContext = NO_ZONES,
        *,
        jump_m: float = 0.0,
        ignition: bool | None = True,
        extra: dict[str, Any] | None = None,
        tires: Sequence[tuple[str, float, float | None]] = (),
    ) -> list[AlarmCandidate]:
        if self.last is not None and t_s > self.last[0]:
            dt = t_s - self.last[0]
            self.lat += (self.last[1] + speed) / 2 / 3.6 * dt / M_PER_DEG_LAT
        self.last = (t_s, speed)
        self.seq += 1
        readings = tuple(TireReading(pos, kpa, temp, None) for pos, kpa, temp in tires)
        tm = Telemetry(
            self.seq,
            self.t0 + timedelta(seconds=t_s),
            self.lat + jump_m / M_PER_DEG_LAT,
            120.6,
            speed,
            0.0,
            "D-1",
            ignition,
            None,
            readings,
            extra,
        )
        return self.state.observe_telemetry(tm, zones)

    def kinds(self, t_s: float, speed: float, **kw: Any) -> list[tuple[str, int | None]]:
        return [(c.kind, c.level) for c in self.fix(t_s, speed, **kw)]

    def ramp(
        self, t0: float, t1: float, speed: float, every: float = 1.0, **kw: Any
    ) -> list[tuple[float, str, int | None]]:
        """Fixes from t0 to t1 inclusive at a constant speed; (t, kind, level) raised."""
        out: list[tuple[float, str, int | None]] = []
        t = t0
        while t <= t1 + 1e-9:
            out += [(t, c.kind, c.level) for c in self.fix(t, speed, **kw)]
            t += every
        return out

    def event(
        self, t_s: float, kind: str, level: int | None = 1, speed: float = 60.0, **kw: Any
    ) -> AlarmCandidate:
        self.seq += 1
        e = DeviceEvent(
            self.seq,
            self.t0 + timedelta(seconds=t_s),
            kind,
            level,
            31.3,
            120.6,
            speed,
            "D-1",
            kw.pop("attrs", None),
            None,
        )
        return self.state.observe_event(e, **kw)


# ---- harsh braking and acceleration ----


def test_harsh_brake_onset_once_per_episode_then_reonset() -> None:
    r = Run("coach")
    assert r.ramp(0, 5, 60.0) == []
    assert r.kinds(6, 48.0) == [("harsh_brake", 1)]  # 3.3 m/s² ≥ 3.0 for a coach
    assert r.kinds(7, 36.0) == []  # same stop: no repeat
    assert r.kinds(8, 22.0) == []  # 3.9 m/s², still level 1
    assert r.kinds(9, 20.0) == []  # gentle: the episode ends
    assert r.ramp(10, 29, 20.0) == []
    assert r.kinds(30, 8.0) == [("harsh_brake", 1)]  # a new episode alerts again
    assert r.state.recent_count("harsh_brake", 1800, T0 + timedelta(seconds=30)) == 2


def test_harsh_brake_candidate_fields_and_reason() -> None:
    r = Run("coach")
    r.fix(0, 60.0)
    (c,) = r.fix(1, 48.0)
    assert (c.kind, c.key, c.derived, c.level, c.seq, c.speed_kmh) == (
        "harsh_brake",
        "harsh_brake",
        True,
        1,
        2,
        48.0,
    )
    assert c.reason == "harsh brake L1 −3.3 m/s², 60→48 km/h in 1 s, coach"
    assert c.severity == "general"


def test_harsh_brake_level_rises_within_an_episode_without_counting_twice() -> None:
    r = Run("coach")
    r.fix(0, 80.0)
    assert r.kinds(1, 68.0) == [("harsh_brake", 1)]
    assert r.kinds(2, 50.0) == [("harsh_brake", 2)]  # 5 m/s² ≥ 3.0 × 1.6
    assert r.kinds(3, 32.0) == []
    assert r.state.recent_count("harsh_brake", 1800, T0 + timedelta(seconds=3)) == 1


@pytest.mark.parametrize(
    ("cls", "drop", "fires"),
    [("coach", 10.0, False), ("hazmat", 10.0, True), ("bus", 11.0, True), ("freight", 10.0, False)],
)
def test_harsh_brake_thresholds_per_class(cls: str, drop: float, fires: bool) -> None:
    r = Run(cls)
    r.fix(0, 60.0)
    assert (r.kinds(1, 60.0 - drop) == [("harsh_brake", 1)]) is fires  # 2.8 / 3.1 m/s²


def test_harsh_accel_per_class() -> None:
    bus, hazmat = Run("bus"), Run("hazmat")
    for r in (bus, hazmat):
        r.fix(0, 20.0)
    assert bus.kinds(1, 26.0) == []  # 1.7 m/s² < 2.0
    assert hazmat.kinds(1, 26.0) == [("harsh_accel", 1)]  # ≥ 1.5 for a loaded tanker
    assert bus.kinds(2, 34.0) == [("harsh_accel", 1)]  # 2.2 m/s²


def test_no_harsh_event_from_a_speed_glitch() -> None:
    r = Run("coach")
    r.ramp(0, 5, 80.0)
    assert r.kinds(6, 0.0) == []  # 22 m/s²: no bus brakes like that, the fix is bad
    assert r.kinds(7, 80.0) == []  # judged against the last good fix: nothing happened
    assert r.kinds(8, 80.0) == []


def test_no_harsh_event_from_a_position_jump() -> None:
    r = Run("coach")
    r.ramp(0, 5, 60.0)
    assert r.kinds(6, 48.0, jump_m=400.0) == []  # moved 400 m more than 54 km/h allows
    assert r.kinds(7, 47.0) == []  # vs the fix at t = 5: 60 → 47 over 2 s is 1.8 m/s²


def test_harsh_needs_a_plausible_interval() -> None:
    r = Run("coach")
    r.fix(0, 60.0)
    assert r.kinds(8, 20.0) == []  # 8 s apart: too coarse to call it harsh
    r = Run("coach")
    r.fix(0, 60.0)
    assert r.kinds(0.2, 57.0) == []  # too close: judged later against the same reference
    assert r.kinds(1.0, 48.0) == [("harsh_brake", 1)]


# ---- overspeed ----


def test_overspeed_onset_after_duration_once_hold_clear_reonset() -> None:
    r = Run("coach")  # road default 100 km/h, tolerance 5
    assert r.ramp(0, 30, 104.0) == []  # inside the tolerance
    got = r.ramp(31, 60, 107.0)
    assert got == [(41, "overspeed", 1)]  # 10 s above 105
    assert r.ramp(61, 70, 103.0) == []  # above the limit, within tolerance: held
    assert r.ramp(71, 100, 107.0) == []  # the same episode
    assert r.ramp(101, 110, 99.0) == []  # back under: cleared
    assert r.kinds(111, 103.0) == []
    assert r.ramp(112, 125, 107.0) == [(122, "overspeed", 1)]


def test_overspeed_reason_level2_rise_and_zone_limit() -> None:
    r = Run("bus")  # road default 80
    got = r.fix(0, 90.0) + r.fix(5, 90.0) + r.fix(10, 90.0)
    assert [(c.level, c.reason) for c in got] == [
        (1, "overspeed L1 90 km/h over the 80 km/h road limit for 10 s")
    ]
    assert r.kinds(11, 97.0) == [("overspeed", 2)]  # ≥ 80 × 1.2: the level rises once
    assert r.kinds(12, 98.0) == []
    assert r.state.recent_count("overspeed", 1800, T0 + timedelta(seconds=12)) == 1
    school = ZoneContext(inside=(SCHOOL,), speed_limit_kmh=30.0)
    s = Run("bus")
    got2 = [c for t in range(11) for c in s.fix(t, 40.0, zones=school)]
    assert [(c.kind, c.level) for c in got2] == [("overspeed", 2)]  # 40 ≥ 30 × 1.2
    assert (
        got2[0].reason == "overspeed L2 40 km/h over the 30 km/h zone limit for 10 s, school zone"
    )


def test_overspeed_needs_continuous_proof() -> None:
    r = Run("coach")
    r.fix(0, 110.0)
    assert r.kinds(20, 110.0) == []  # 20 s of silence: the run restarts here
    assert r.ramp(21, 29, 110.0) == []
    assert r.kinds(30, 110.0) == [("overspeed", 1)]


def test_overspeed_ignores_implausible_speeds() -> None:
    r = Run("coach")
    assert r.ramp(0, 20, 250.0) == []


# ---- driving time ----

HOUR = 3600.0


def test_four_hours_continuous_fires_once_and_a_real_rest_resets() -> None:
    r = Run("bus")
    got = r.ramp(0, 4 * HOUR + 600, 60.0, every=60.0)
    assert got == [(4 * HOUR, "driving_time", None)]
    assert r.state.continuous_driving_s == pytest.approx(4 * HOUR + 600)
    # A 19-minute stop is not a rest: no reset, and the episode stays fired. (Each
    # interval counts in the state of the fix that opened it.)
    t = 4 * HOUR + 660
    assert r.ramp(t, t + 18 * 60, 0.0, every=60.0) == []
    assert r.state.stopped_s == pytest.approx(18 * 60)
    assert r.ramp(t + 19 * 60, t + 2 * HOUR, 60.0, every=60.0) == []
    assert r.state.continuous_driving_s > 4 * HOUR
    # 20 minutes stopped: a rest. The next 4 hours fire again.
    t2 = t + 2 * HOUR + 60
    assert r.ramp(t2, t2 + 20 * 60, 0.0, every=60.0) == []
    assert r.state.continuous_driving_s == 0.0
    got = r.ramp(t2 + 21 * 60, t2 + 21 * 60 + 4 * HOUR, 60.0, every=60.0)
    assert [k for _, k, _ in got] == ["driving_time"]


def test_short_stops_do_not_count_as_driving() -> None:
    r = Run("coach")
    assert r.ramp(0, 2 * HOUR, 60.0, every=60.0) == []
    assert r.ramp(2 * HOUR + 60, 2 * HOUR + 600, 0.0, every=60.0) == []  # 10 min at a stop
    got = r.ramp(2 * HOUR + 660, 5 * HOUR, 60.0, every=60.0)
    # 2 h + the minute rolling into the stop, then 2 h more from 2:11 → fires at 4:11.
    assert got[0][1] == "driving_time" and got[0][0] == pytest.approx(4 * HOUR + 660 - 60)


def test_ignition_off_silence_is_a_rest() -> None:
    r = Run("coach")
    r.ramp(0, 3 * HOUR, 60.0, every=60.0)
    # The unit goes silent straight after a moving fix (ignition off, no fixes) for
    # 25 minutes: that gap is a stop, so a rest, not 25 minutes of driving.
    r.fix(3 * HOUR + 25 * 60, 60.0)
    assert r.state.continuous_driving_s == 0.0
    assert r.ramp(3 * HOUR + 26 * 60, 6 * HOUR, 60.0, every=60.0) == []
    # A short silence (≤ 5 min) while moving is still driving: a radio gap, not a stop.
    r.fix(6 * HOUR + 240, 60.0)
    assert r.state.continuous_driving_s == pytest.approx(6 * HOUR + 240 - (3 * HOUR + 25 * 60))


def test_ignition_off_is_not_driving() -> None:
    r = Run("coach")
    r.ramp(0, 600, 30.0, every=60.0, ignition=False)  # e.g. towed, or a bad status bit
    assert r.state.continuous_driving_s == 0.0


def test_night_two_hour_rule_for_coaches_only() -> None:
    evening = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 21:00 in Suzhou
    coach, bus = Run("coach", t0=evening), Run("bus", t0=evening)
    got = coach.ramp(0, 5 * HOUR, 70.0, every=60.0)
    # Night begins at 22:00 local; two hours of night driving by midnight.
    assert got == [(3 * HOUR, "driving_time", None)]
    assert coach.state.night_driving_s > 2 * HOUR
    got = bus.ramp(0, 5 * HOUR, 70.0, every=60.0)
    assert got == [(4 * HOUR, "driving_time", None)]  # buses keep the 4 h rule


def test_night_rule_reason_and_severity() -> None:
    night = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # 23:00 local
    r = Run("coach", t0=night)
    got = [c for t in range(0, int(2 * HOUR) + 1, 60) for c in r.fix(float(t), 90.0)]
    (c,) = got
    # "night" is not repeated: the detail already says it.
    assert c.reason == "2.0 h night driving without a 20-min break at 90 km/h, coach"
    # moderate base 50 + 90 km/h 10 + coach 10 + night 10 = 80
    assert (c.kind, c.key, c.severity, c.derived) == (
        "driving_time",
        "driving_time",
        "moderate",
        True,
    )


def test_driving_today_resets_at_local_midnight() -> None:
    evening = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # 23:00 local
    r = Run("bus", t0=evening)
    r.ramp(0, 55 * 60, 50.0, every=60.0)
    assert r.state.driving_today_s == pytest.approx(55 * 60)
    r.ramp(56 * 60, 70 * 60, 50.0, every=60.0)  # past midnight local
    assert r.state.driving_today_s == pytest.approx(10 * 60)
    assert r.state.continuous_driving_s == pytest.approx(70 * 60)


def test_is_night_uses_local_time() -> None:
    s = VehicleState(vehicle(), POLICY)
    assert not s.is_night(datetime(2026, 11, 26, 13, 59, tzinfo=UTC))  # 21:59
    assert s.is_night(datetime(2026, 11, 26, 14, 0, tzinfo=UTC))  # 22:00
    assert s.is_night(datetime(2026, 11, 26, 21, 59, tzinfo=UTC))  # 05:59
    assert not s.is_night(datetime(2026, 11, 26, 22, 0, tzinfo=UTC))  # 06:00


# ---- zones ----


def test_hazmat_entering_a_restricted_zone() -> None:
    enter = ZoneContext(inside=(RESTRICTED,), entered=(RESTRICTED,))
    inside = ZoneContext(inside=(RESTRICTED,))
    r = Run("hazmat")
    r.fix(0, 40.0)
    (c,) = r.fix(1, 40.0, zones=enter)
    assert (c.kind, c.key, c.derived) == (
        "hazmat_restricted_zone",
        "hazmat_restricted_zone:z-hr",
        True,
    )
    # moderate 50 + hazmat 15 + restricted zone 25 = 90
    assert c.severity == "moderate"
    assert c.reason == "entered hazmat-restricted zone Jinji Lake tunnel at 40 km/h"
    assert r.fix(2, 40.0, zones=inside) == []  # inside, not entering again
    assert r.state.zones_inside == (RESTRICTED,)
    assert r.state.zone_kinds == frozenset({"hazmat_restricted"})
    # Other classes may pass; other zones mean nothing to this rule.
    assert Run("coach").fix(0, 40.0, zones=enter) == []
    school = ZoneContext(inside=(SCHOOL,), entered=(SCHOOL,), speed_limit_kmh=30.0)
    assert Run("hazmat").fix(0, 20.0, zones=school) == []


def test_events_take_the_zones_of_the_latest_fix_unless_given() -> None:
    r = Run("bus")
    r.fix(0, 25.0, zones=ZoneContext(inside=(SCHOOL,), speed_limit_kmh=30.0))
    c = r.event(1, "distraction", 1, speed=25.0)
    assert c.reason == "distraction L1 at 25 km/h, school zone"
    c = r.event(100, "yawning", 1, speed=25.0, zones=NO_ZONES)
    assert c.reason == "yawning L1 at 25 km/h"
    assert r.state.speed_limit_kmh == 30.0


# ---- tires through the state ----


def test_tire_alarms_are_graded_with_context() -> None:
    r = Run("hazmat")
    (c,) = r.fix(0, 90.0, tires=[("2LO", 680.0, None)])  # 75.6 % of 900
    assert (c.kind, c.key, c.derived, c.tire_pos) == (
        "tire_pressure_low",
        "tire_pressure_low:2LO",
        True,
        "2LO",
    )
    assert c.reason == (
        "tire 2LO 680 kPa, 76% of placard 900 kPa at 90 km/h, over the 80 km/h limit, hazmat"
    )
    assert c.severity == "general"  # 0 + 10 + 10 + 15


def test_a_measured_tire_severity_is_a_floor() -> None:
    r = Run("bus")
    (c,) = r.fix(
        0,
        3.0,
        tires=[("1L", 800.0, 104.0)],
        zones=ZoneContext(inside=(ZoneRef("d", "depot", "North depot"),)),
    )
    assert (c.kind, c.severity) == ("tire_temp_high", "severe")  # crawling in a depot


def test_tire_imbalance_through_the_state() -> None:
    r = Run("coach")
    got = r.fix(0, 50.0, tires=[("1L", 850.0, 30.0), ("1R", 660.0, 30.0)])
    kinds = sorted(c.kind for c in got)
    assert kinds == ["tire_imbalance", "tire_pressure_low"]
    imb = next(c for c in got if c.kind == "tire_imbalance")
    assert (imb.key, imb.tire_pos) == ("tire_imbalance:axle1", "1R")


def test_tire_severity_rise_is_not_a_new_occurrence() -> None:
    r = Run("coach")
    r.fix(0, 50.0, tires=[("1L", 850.0, 85.0)])
    r.fix(10, 50.0, tires=[("1L", 850.0, 101.0)])  # same episode, now severe
    assert r.state.recent_count("tire_temp_high", 1800, T0 + timedelta(seconds=10)) == 1


# ---- state bookkeeping ----


def test_load_from_the_status_bits_and_kept_until_changed() -> None:
    r = Run("freight")
    assert r.state.load == "unknown"
    r.fix(0, 50.0, extra={"load": "full"})
    assert r.state.load == "full"
    r.fix(1, 50.0)
    assert r.state.load == "full"
    r.fix(2, 50.0, extra={"load": "overloaded"})  # not a JT/T 808 value: ignored
    assert r.state.load == "full"
    r.fix(3, 50.0, extra={"load": "empty"})
    assert r.state.load == "empty"


def test_history_is_bounded_to_its_window_and_out_of_order_fixes_are_ignored() -> None:
    r = Run("bus")
    r.ramp(0, 1200, 40.0)
    h = r.state.history
    assert h[-1].t - h[0].t == pytest.approx(600)
    assert len(h) == 601
    assert r.state.speed_kmh == 40.0
    r.fix(1100, 0.0)  # older than the newest: speed, history and clocks unchanged
    assert r.state.speed_kmh == 40.0 and len(r.state.history) == 601
    assert r.state.last_ts == T0 + timedelta(seconds=1200)
    assert r.state.position is not None


def test_recent_count_windows_and_merge() -> None:
    r = Run("coach")
    for t in (0, 5, 300, 900, 1700):
        r.event(t, "lane_departure")
    now = T0 + timedelta(seconds=1700)
    # 0 and 5 are one occurrence (a re-raise within 10 s).
    assert r.state.recent_count("lane_departure", 1800, now) == 4
    assert r.state.recent_count("lane_departure", 1000, now) == 2
    assert r.state.recent_count("fatigue", 1800, now) == 0
    with pytest.raises(UsageError, match="exceeds retention"):
        r.state.recent_count("lane_departure", 7200, now)


def test_recurrence_reaches_the_reason() -> None:
    night = datetime(2026, 11, 26, 19, 0, tzinfo=UTC)  # 03:00 local
    r = Run("hazmat", t0=night)
    road = ZoneContext(speed_limit_kmh=100.0)  # an expressway section posted 100 for all
    r.fix(0, 94.0, zones=road)
    got = [r.event(t, "fatigue", 2, speed=94.0) for t in (60, 600, 1200)]
    assert [c.severity for c in got] == ["moderate", "moderate", "severe"]
    assert got[-1].reason == "fatigue L2 at 94 km/h, 3rd in 30 min, hazmat, night"
    assert got[0].key == "fatigue" and not got[0].derived


def test_bus_yawning_in_a_depot_is_general() -> None:
    r = Run("bus")
    depot = ZoneContext(inside=(ZoneRef("d", "depot", "North depot"),))
    r.fix(0, 8.0, zones=depot)
    c = r.event(1, "yawning", 1, speed=8.0)
    assert (c.severity, c.reason) == ("general", "yawning L1 at 8 km/h")


def test_tpms_device_events_keep_their_tire_key() -> None:
    c = Run("coach").event(0, "tire_fast_leak", 1, attrs={"pos": "2LI"})
    assert (c.key, c.tire_pos) == ("tire_fast_leak:2LI", "2LI")


@pytest.mark.parametrize("vehicle_class", ["bus", "coach", "hazmat", "freight"])
def test_a_unit_reported_fast_leak_is_severe_at_speed_as_a_detected_one(
    vehicle_class: str,
) -> None:
    crawling = Run(vehicle_class).event(0, "tire_fast_leak", 1, speed=20.0, attrs={"pos": "1L"})
    assert crawling.severity != "severe"
    at_speed = Run(vehicle_class).event(0, "tire_fast_leak", 1, speed=90.0, attrs={"pos": "1L"})
    assert at_speed.severity == "severe"


def test_a_custom_grader_plugs_in() -> None:
    class Model:
        version = "model-1"

        def __init__(self) -> None:
            self.seen: list[GradingInput] = []

        def grade_many(self, inputs: Sequence[GradingInput]) -> list[Graded]:
            self.seen += inputs
            return [Graded("moderate", f"model: {x.kind}", 0.5) for x in inputs]

    model = Model()
    s = VehicleState(vehicle("bus"), POLICY, grader=model)
    e = DeviceEvent(1, T0, "yawning", 1, 31.3, 120.6, 30.0, None, None, None)
    c = s.observe_event(e)
    assert (c.severity, c.reason) == ("moderate", "model: yawning")
    x = model.seen[0]
    assert (x.kind, x.vehicle_class, x.recurrence, x.night, x.load) == (
        "yawning",
        "bus",
        1,
        False,
        "unknown",
    )


def test_recent_counts_are_bounded() -> None:
    c = RecentCounts(retention_s=3600, merge_s=0, max_per_kind=4)
    for t in range(10):
        assert c.record("k", float(t))
    assert c.count("k", 3600, 9.0) == 4
    assert not c.record("k", 0.5)  # older than everything kept in a full deque
    assert c.record("k", 7.5)  # a late one within the kept range lands in order
    assert c.count("k", 2.0, 9.0) == 3  # 7.5, 8, 9
    assert c.record("j", 5000.0)  # newer: everything older than an hour goes
    assert c.count("k", 3600, 5000.0) == 0
    assert not c.record("k", 10.0)  # too old for any window


def test_unknown_class_threshold_is_a_usage_error() -> None:
    odd = replace(vehicle(), vehicle_class="tram")
    with pytest.raises(UsageError, match="tram"):
        VehicleState(odd, POLICY)
