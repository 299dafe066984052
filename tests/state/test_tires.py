"""TireMonitor fed timelines of telemetry: onset, no repeats, rises, clears, leaks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy
import pytest

from telematics.classify.alarms import AlarmCandidate
from telematics.classify.rules import Rules
from telematics.fleet import Vehicle
from telematics.protocol.messages import Telemetry, TireReading
from telematics.state.tires import (
    _MAX_POINTS,
    FAST_LEAK,
    HIGH,
    IMBALANCE,
    LOW,
    SLOW_LEAK,
    TEMP,
    TireMonitor,
    _Window,
    cold_kpa,
)

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
COACH = Vehicle("SU-E12345", "F-1", "coach", None, ("1L", "1R", "2LO", "2LI", "2RI", "2RO"), 850.0)

Tire = tuple[str, float | None, float | None]  # pos, kpa, temp_c


class Feed:
    """A monitor plus a clock: ``at(seconds, tires)`` feeds one telemetry item."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.monitor = TireMonitor(COACH, rules or Rules())
        self.seq = 0

    def at(self, t_s: float, tires: Iterable[Tire], speed: float = 50.0) -> list[AlarmCandidate]:
        self.seq += 1
        readings = tuple(TireReading(pos, kpa, temp, None) for pos, kpa, temp in tires)
        tm = Telemetry(
            self.seq,
            T0 + timedelta(seconds=t_s),
            31.3,
            120.58,
            speed,
            90.0,
            "D-1",
            True,
            None,
            readings,
            None,
        )
        return self.monitor.update(tm)

    def one(
        self,
        t_s: float,
        pos: str,
        kpa: float | None,
        temp: float | None = None,
        speed: float = 50.0,
    ) -> list[tuple[str, str]]:
        return [(c.kind, c.severity) for c in self.at(t_s, [(pos, kpa, temp)], speed)]


# Pressure-level timelines step 1000 s so the leak windows never hold two points.
STEP = 1000.0


def test_low_pressure_onset_rise_hold_clear_reonset() -> None:
    f = Feed()
    assert f.one(0, "2LO", 850) == []
    cands = f.at(1 * STEP, [("2LO", 598, None)])
    assert [(c.kind, c.severity) for c in cands] == [(LOW, "general")]
    c = cands[0]
    assert c.reason == "tire 2LO 598 kPa, 70% of placard 850 kPa"
    assert (c.key, c.tire_pos, c.derived, c.level, c.seq) == (f"{LOW}:2LO", "2LO", True, None, 2)
    assert (c.ts, c.lat, c.lon, c.speed_kmh, c.vehicle_id) == (
        T0 + timedelta(seconds=STEP),
        31.3,
        120.58,
        50.0,
        "SU-E12345",
    )
    assert f.one(2 * STEP, "2LO", 600) == []  # still low: no re-emission
    assert f.one(3 * STEP, "2LO", 580) == [(LOW, "moderate")]  # < 70 %: severity rises
    assert f.one(4 * STEP, "2LO", 590) == []  # back in the general band: no new alert
    assert f.one(5 * STEP, "2LO", 675) == []  # above 78.6 % but inside the margin: holds
    assert f.monitor.active() == {"2LO": frozenset({LOW})}
    assert f.one(6 * STEP, "2LO", 700) == []  # ≥ 78.6 % × 1.03: clears silently
    assert f.monitor.active() == {}
    assert f.one(7 * STEP, "2LO", 650) == [(LOW, "general")]  # a later onset alerts again


def test_high_pressure_onset_hold_clear_reonset() -> None:
    f = Feed()
    assert f.one(0, "1L", 1147) == []  # 135 % of 850 is 1147.5
    assert f.one(STEP, "1L", 1160) == [(HIGH, "general")]
    assert f.one(2 * STEP, "1L", 1200) == []
    assert f.one(3 * STEP, "1L", 1120) == []  # inside the margin
    assert f.one(4 * STEP, "1L", 1110) == []  # ≤ 1147.5 × 0.97: cleared
    assert f.monitor.active() == {}
    assert f.one(5 * STEP, "1L", 1150) == [(HIGH, "general")]


def test_temperature_onset_rise_clear_reonset() -> None:
    f = Feed()
    assert f.one(0, "3RI", 850, 79.9) == []
    cands = f.at(10, [("3RI", 850, 86.0)])
    assert [(c.kind, c.severity, c.reason) for c in cands] == [(TEMP, "moderate", "tire 3RI 86 °C")]
    assert f.one(20, "3RI", 850, 95) == []
    assert f.one(30, "3RI", 850, 100) == [(TEMP, "severe")]
    assert f.one(40, "3RI", 850, 104) == []
    assert f.one(50, "3RI", 850, 85) == []  # episode peak stays severe: no downgrade alert
    assert f.one(60, "3RI", 850, 78) == []  # inside the margin (80 × 0.97 = 77.6)
    assert f.monitor.active() == {"3RI": frozenset({TEMP})}
    assert f.one(70, "3RI", 850, 77) == []
    assert f.monitor.active() == {}
    assert f.one(80, "3RI", 850, 82) == [(TEMP, "moderate")]


def test_sensor_without_pressure_skips_pressure_conditions() -> None:
    f = Feed()
    assert f.one(0, "2RI", None, 40) == []
    assert f.one(10, "2RI", None, 101) == [(TEMP, "severe")]
    for i in range(2, 60):
        assert f.one(i * 10, "2RI", None, 101) == []
    assert f.monitor.active() == {"2RI": frozenset({TEMP})}


def test_several_tires_are_independent() -> None:
    f = Feed()
    cands = f.at(0, [("1L", 500, 30), ("1R", 850, 30), ("2LO", 1200, 90)])
    assert sorted(c.key for c in cands) == [f"{HIGH}:2LO", f"{LOW}:1L", f"{TEMP}:2LO"]
    assert f.monitor.active() == {"1L": frozenset({LOW}), "2LO": frozenset({HIGH, TEMP})}


def leak(
    f: Feed,
    pos: str,
    start: float,
    t0: float,
    t1: float,
    every: float,
    kpa_per_min: float,
    temp: float | None = 30.0,
    speed: float = 50.0,
) -> list[tuple[float, str, str]]:
    """Feed a steady pressure ramp; return (t, kind, severity) of every candidate."""
    out: list[tuple[float, str, str]] = []
    t = t0
    while t <= t1:
        kpa = start + kpa_per_min * (t - t0) / 60
        out += [(t, c.kind, c.severity) for c in f.at(t, [(pos, kpa, temp)], speed)]
        t += every
    return out


def test_slow_leak_onset_once_then_clear_after_refill_and_reonset() -> None:
    f = Feed()
    got = leak(f, "2LO", 850, 0, 900, 30, -1.5)
    # Needs 300 s of data: the first chance is at t = 300.
    assert got == [(300, SLOW_LEAK, "general")]
    cands = f.at(930, [("2LO", 850 - 1.5 * 15.5, 30.0)])
    assert cands == []  # still leaking: no repeat
    assert f.monitor.active() == {"2LO": frozenset({SLOW_LEAK})}
    # Refilled to placard: the slope turns positive and the condition clears silently.
    assert leak(f, "2LO", 850, 960, 1800, 30, 0.0) == []
    assert f.monitor.active() == {}
    again = leak(f, "2LO", 850, 1830, 3000, 30, -2.0)
    assert [(k, s) for _, k, s in again] == [(SLOW_LEAK, "general")]


def test_slow_leak_reason() -> None:
    f = Feed()
    cands: list[AlarmCandidate] = []
    for i in range(11):
        cands += f.at(i * 30, [("1R", 850 - 1.5 * i / 2, 30.0)])
    assert [c.reason for c in cands] == ["slow leak on 1R: −1.5 kPa/min over 5 min"]


def test_slow_leak_needs_five_points() -> None:
    f = Feed()
    got = [f.one(t, "1L", 850 - 2.0 * t / 60, 30) for t in (0, 150, 300, 450)]
    assert got == [[], [], [], []]
    assert f.one(600, "1L", 850 - 20.0, 30) == [(SLOW_LEAK, "general")]


def test_cooling_tire_is_not_a_leak() -> None:
    """After a stop the tire cools from 60 °C to 25 °C: gauge pressure falls ~5 kPa/min."""
    hot_gauge, hot_c = 900.0, 60.0

    def gauge_at(temp_c: float) -> float:  # same air, constant volume
        return (hot_gauge + 101.325) * (temp_c + 273.15) / (hot_c + 273.15) - 101.325

    def cooling(temps_known: bool) -> list[tuple[str, str]]:
        f = Feed()
        out: list[tuple[str, str]] = []
        for i in range(41):  # 20 minutes, every 30 s
            temp = hot_c - 35.0 * i / 40
            out += f.one(i * 30, "2LI", gauge_at(temp), temp if temps_known else None, 0.0)
        return out

    assert gauge_at(25.0) < hot_gauge - 100  # the drop is real on the gauge…
    assert cooling(temps_known=True) == []  # …but compensated it is flat
    assert (SLOW_LEAK, "general") in cooling(temps_known=False)  # control: raw looks like a leak


def test_cold_kpa_formula() -> None:
    assert cold_kpa(850.0, None) == 850.0
    assert cold_kpa(850.0, 20.0) == pytest.approx(850.0)
    assert cold_kpa(900.0, 60.0) == pytest.approx((1001.325) * 293.15 / 333.15 - 101.325)


def test_out_of_order_and_resent_readings_are_ignored() -> None:
    f = Feed()
    assert f.one(100, "1L", 850, 30) == []
    assert f.one(50, "1L", 400, 120) == []  # older than the newest for 1L
    assert f.one(100, "1L", 400, 120) == []  # same time: a resend
    assert f.monitor.active() == {}
    # Another tire's newest time is its own.
    assert f.one(50, "1R", 400, 30) == [(LOW, "moderate")]
    # The ignored reading did not reach the leak windows either.
    assert f.one(115, "1L", 849, 30) == []


def test_fast_leak_moderate_then_severe_at_speed_then_clear_and_reonset() -> None:
    f = Feed()
    # −36 kPa/min, every 5 s, at 40 km/h: needs a 10 kPa fitted drop → onset at t = 20.
    got = leak(f, "1L", 850, 0, 30, 5, -36.0, speed=40.0)
    assert got == [(20, FAST_LEAK, "moderate")]
    # Same leak, now at 88 km/h: severity rises once.
    got = leak(f, "1L", 850 - 36 * 35 / 60, 35, 60, 5, -36.0, speed=88.0)
    assert got == [(35, FAST_LEAK, "severe")]
    # Pressure holds: once the 60 s window no longer shows the drop, it clears.
    leak(f, "1L", 850 - 36.0, 65, 200, 5, 0.0, speed=88.0)
    assert FAST_LEAK not in f.monitor.active().get("1L", frozenset())
    got = leak(f, "1L", 850 - 36.0, 205, 300, 5, -30.0, speed=30.0)
    assert [(k, s) for _, k, s in got] == [(FAST_LEAK, "moderate")]


def test_fast_leak_reason_and_severe_onset_at_speed() -> None:
    f = Feed()
    cands: list[AlarmCandidate] = []
    for i in range(5):
        cands += f.at(i * 5, [("1L", 850 - 34 * i * 5 / 60, 45.0)], speed=88.0)
    fast = [c for c in cands if c.kind == FAST_LEAK]
    assert [(c.severity, c.reason, c.key) for c in fast] == [
        ("severe", "fast leak on 1L: −34 kPa/min at 88 km/h", f"{FAST_LEAK}:1L")
    ]


def test_fast_leak_ignores_sensor_noise_and_short_spans() -> None:
    f = Feed()
    # 25 kPa lost within 5 s would be −300 kPa/min, but two readings < 10 s apart are not judged.
    assert f.one(0, "2RO", 850, 30) == []
    assert f.one(5, "2RO", 825, 30) == []
    f = Feed()
    # ±2 kPa pressure and ±1 °C temperature jitter every 5 s for 10 minutes: never a leak.
    for i in range(120):
        jitter = 1 if i % 2 else -1
        assert f.one(i * 5, "2RO", 848 + 2 * jitter, 40 + jitter) == []


def test_fast_leak_suppresses_slow_leak_while_active() -> None:
    f = Feed()
    got = leak(f, "2LO", 850, 0, 400, 10, -21.0, speed=40.0)
    kinds = [k for _, k, _ in got]
    assert FAST_LEAK in kinds and SLOW_LEAK not in kinds


def test_custom_rules_thresholds() -> None:
    f = Feed(Rules(high_temp_c=70.0, fast_leak_severe_speed_kmh=100.0))
    assert f.one(0, "1L", 850, 72) == [(TEMP, "moderate")]
    got = leak(f, "1R", 850, 0, 20, 5, -40.0, speed=90.0)
    assert [(k, s) for _, k, s in got] == [(FAST_LEAK, "moderate")]


# ---- axle imbalance ----

TANKER = Vehicle("SU-H1", "F-1", "hazmat", None, ("1L", "1R", "2LO", "2LI", "2RI", "2RO"), 900.0)


class Axles:
    """A monitor with imbalance on (20 %); ``at(t, tires)`` returns (kind, key, pos)."""

    def __init__(self, vehicle: Vehicle = COACH, skew_s: float = 120.0) -> None:
        self.monitor = TireMonitor(
            vehicle, Rules(), imbalance_ratio=0.2, imbalance_max_skew_s=skew_s
        )
        self.seq = 0
        self.last: list[AlarmCandidate] = []

    def at(self, t_s: float, tires: Iterable[Tire]) -> list[tuple[str, str, str | None]]:
        self.seq += 1
        readings = tuple(TireReading(pos, kpa, temp, None) for pos, kpa, temp in tires)
        tm = Telemetry(
            self.seq, T0 + timedelta(seconds=t_s), 31.3, 120.58, 50.0, 90.0, None, True, None,
            readings, None,
        )  # fmt: skip
        self.last = [c for c in self.monitor.update(tm) if c.kind == IMBALANCE]
        return [(c.kind, c.key, c.tire_pos) for c in self.last]


def test_axle_imbalance_onset_hold_clear_reonset() -> None:
    a = Axles()
    assert a.at(0, [("1L", 850, 20), ("1R", 690, 20)]) == []  # 18.8 %
    onset = a.at(STEP, [("1L", 850, 20), ("1R", 675, 20)])  # 20.6 %, above low-pressure 78.6 %
    assert onset == [(IMBALANCE, f"{IMBALANCE}:axle1", "1R")]
    c = a.last[0]
    assert (c.severity, c.derived, c.level) == ("general", True, None)
    assert c.reason == "axle 1 imbalance: 1R 675 kPa vs 1L 850 kPa cold, 21% apart"
    assert a.monitor.imbalanced() == {"1": "1R"}
    assert a.at(2 * STEP, [("1L", 850, 20), ("1R", 660, 20)]) == []  # still: no repeat
    assert a.at(3 * STEP, [("1L", 850, 20), ("1R", 682, 20)]) == []  # 19.8 %: in the margin
    assert a.monitor.imbalanced() == {"1": "1R"}
    assert a.at(4 * STEP, [("1L", 850, 20), ("1R", 690, 20)]) == []  # 18.8 % < 19.4 %: clear
    assert a.monitor.imbalanced() == {}
    assert a.at(5 * STEP, [("1L", 850, 20), ("1R", 670, 20)]) == [
        (IMBALANCE, f"{IMBALANCE}:axle1", "1R")
    ]


def test_twin_imbalance_is_named_as_such() -> None:
    a = Axles(TANKER)
    tires = [("2LO", 900, 20), ("2LI", 700, 20), ("2RI", 890, 20), ("2RO", 880, 20)]
    assert a.at(0, tires) == [(IMBALANCE, f"{IMBALANCE}:axle2", "2LI")]
    assert a.last[0].reason == "twins 2L imbalance: 2LI 700 kPa vs 2LO 900 kPa cold, 22% apart"


def test_imbalance_across_an_axle_with_twins() -> None:
    a = Axles(TANKER)
    # The left twins agree with each other; the right pair is 25 % softer than the left.
    tires = [("2LO", 900, 20), ("2LI", 900, 20), ("2RI", 680, 20), ("2RO", 690, 20)]
    assert a.at(0, tires) == [(IMBALANCE, f"{IMBALANCE}:axle2", "2RI")]
    assert a.last[0].reason.startswith("axle 2 imbalance: 2RI 680 kPa vs ")
    assert a.at(10, [("1L", 900, 20), ("1R", 900, 20)]) == []  # axle 1 is fine


def test_imbalance_compares_cold_pressures() -> None:
    a = Axles()
    # 1L is 22 % higher on the gauge only because it is hot (a dragging brake is a
    # temperature alarm, not an imbalance).
    assert a.at(0, [("1L", 1100, 100), ("1R", 850, 20)]) == []


def test_imbalance_needs_two_fresh_readings_on_the_axle() -> None:
    a = Axles(skew_s=120.0)
    assert a.at(0, [("1L", 850, 20)]) == []
    assert a.at(200, [("1R", 675, 20)]) == []  # 1L's reading is 200 s old
    assert a.at(250, [("1L", 850, 20)]) == [(IMBALANCE, f"{IMBALANCE}:axle1", "1R")]


def test_imbalance_is_off_unless_configured() -> None:
    f = Feed()
    cands = f.at(0, [("1L", 850, 20), ("1R", 675, 20)])
    assert [c.kind for c in cands] == []
    assert f.monitor.imbalanced() == {}


# ---- ended conditions and restored episodes (the alarm lifecycle's view) ----


def test_ended_lists_the_keys_the_last_update_cleared() -> None:
    f = Feed()
    f.at(0, [("2LO", 598, 85.0)])  # low and hot
    assert f.monitor.ended == []
    f.at(STEP, [("2LO", 598, 60.0)])  # cooled down, still low
    assert f.monitor.ended == [f"{TEMP}:2LO"]
    f.at(2 * STEP, [("1L", 850, None)])  # another tire: nothing ended this time
    assert f.monitor.ended == []
    f.at(3 * STEP, [("2LO", 850, 40.0)])
    assert f.monitor.ended == [f"{LOW}:2LO"]


def test_ended_reports_an_axle_imbalance() -> None:
    a = Axles()
    a.at(0, [("1L", 850, 20), ("1R", 675, 20)])
    a.at(STEP, [("1L", 850, 20), ("1R", 690, 20)])  # 18.8 %: clear
    assert a.monitor.ended == [f"{IMBALANCE}:axle1"]


def test_restored_condition_goes_on_without_a_second_onset() -> None:
    f = Feed()
    f.monitor.restore(LOW, "2LO", "general")
    assert f.monitor.active() == {"2LO": frozenset({LOW})}
    assert f.one(0, "2LO", 640) == []  # the same episode: no new alert
    assert f.one(STEP, "2LO", 590) == [(LOW, "moderate")]  # a rise still alerts
    f.one(2 * STEP, "2LO", 850)
    assert f.monitor.ended == [f"{LOW}:2LO"]
    a = Axles()
    a.monitor.restore(IMBALANCE, "1R", "general")
    assert a.at(0, [("1L", 850, 20), ("1R", 675, 20)]) == []
    a.at(STEP, [("1L", 850, 20), ("1R", 850, 20)])
    assert a.monitor.ended == [f"{IMBALANCE}:axle1"]


def test_window_sums_match_a_direct_fit_through_compaction_and_the_point_cap() -> None:
    # 20 Hz for 10 minutes into a 5-minute window: thousands of points pass through it,
    # the arrays are compacted many times, the cap drops points and the sums are redone.
    window = _Window(300.0)
    for i in range(12_000):
        t = 1_700_000_000.0 + i / 20
        window.add(t, 900.0 - 0.02 * i + (i % 7) * 0.5)
    t_live = list(window._t[window._start :])
    p_live = list(window._p[window._start :])
    assert len(window) == len(t_live) == _MAX_POINTS
    assert window.span() == t_live[-1] - t_live[0]
    slope, _ = numpy.polyfit(numpy.array(t_live) - t_live[0], numpy.array(p_live), 1)
    assert window.slope_per_min() == pytest.approx(slope * 60.0, rel=1e-6)
