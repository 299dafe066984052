"""The default policy's severity split on a realistic simulated event mix.

A seeded, pure simulation of one shift per vehicle: the fleet mix, drivers of lognormal
riskiness, road types with class speed limits, ~15 % of driving at night, zones, loads,
rest breaks, and device events at the simulator's per-hour base rates with its
situational modifiers and level distributions. Everything goes through VehicleState, so
recurrence, night and driving time come from the state exactly as in production.
The reference insurer: 85.35 % general / 14.56 % moderate / 0.09 % severe.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from telematics.classify.context import load_policy
from telematics.classify.risk_policy import RiskPolicy
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.geo.context import NO_ZONES, ZoneContext, ZoneRef
from telematics.protocol.messages import ADAS_KINDS, DeviceEvent, Telemetry
from telematics.sim.drivers import BASE_RATES_PER_H
from telematics.state.vehicle import VehicleState

#: Events per driving hour for an average driver: the simulator's own table.
RATES_PER_H = BASE_RATES_PER_H
NIGHT_X = {"fatigue": 3.0, "yawning": 2.0, "distraction": 1.5, "lane_departure": 1.5}
EXPRESSWAY_X = {
    "fatigue": 1.5,
    "lane_departure": 1.3,
    "headway_too_close": 1.5,
    "forward_collision": 1.3,
    "overspeed": 2.0,
    "harsh_turn": 0.3,
    "pedestrian_collision": 0.1,
}
CITY_X = {"blind_spot_right": 2.0, "blind_spot_left": 1.5, "harsh_brake": 1.5, "overspeed": 0.2}
#: Share of level-2 alarms per kind (the simulator's level distributions).
LEVEL2 = {
    "fatigue": 0.2,
    "phone_call": 0.3,
    "distraction": 0.2,
    "driver_absent": 1.0,
    "forward_collision": 0.4,
    "pedestrian_collision": 0.4,
    "obstacle": 0.4,
    "lane_departure": 0.15,
    "headway_too_close": 0.33,
    "road_sign_overspeed": 0.5,
    "overspeed": 0.4,
    "blind_spot_left": 0.2,
    "blind_spot_right": 0.2,
    "blind_spot_rear": 0.2,
    "harsh_brake": 0.5,
    "harsh_turn": 0.4,
    "collision": 1.0,
    "rollover": 1.0,
    "panic_button": 1.0,
}
LIMITS = {
    "coach": {"city": 50.0, "ring": 80.0, "expressway": 100.0},
    "bus": {"city": 50.0, "ring": 80.0, "expressway": 100.0},
    "hazmat": {"city": 40.0, "ring": 60.0, "expressway": 80.0},
    "freight": {"city": 50.0, "ring": 70.0, "expressway": 90.0},
}
CRUISE = {"city": (0.45, 1.0), "ring": (0.7, 1.0), "expressway": (0.8, 1.0)}
ROADS = (("city", 0.45), ("ring", 0.25), ("expressway", 0.30))
ZONES = {  # road → (zone kind, share of that road's driving inside one)
    "city": ("school", 0.04),
    "ring": ("tunnel", 0.06),
    "expressway": ("flood_prone", 0.03),
}
CLASSES = (("coach", 0.4), ("bus", 0.4), ("hazmat", 0.1), ("freight", 0.1))
STEP_S = 60.0  # telemetry spacing: coarse enough to keep the test fast
DAY = datetime(2026, 11, 26, tzinfo=UTC)  # 08:00 in Suzhou is 00:00 UTC


@dataclass
class Split:
    counts: Counter[str]
    by_kind: dict[str, Counter[str]]
    night_share: float
    driving_h: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def share(self, severity: str) -> float:
        return self.counts[severity] / self.total


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    x = rng.random() * sum(w for _, w in table)
    for name, w in table:
        x -= w
        if x < 0:
            return name
    return table[-1][0]


def _poisson(rng: random.Random, lam: float) -> int:
    n, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p < limit:
            return n
        n += 1


def _shift_start(rng: random.Random, night_shift: bool) -> datetime:
    """Local start hour: most shifts by day, some through the evening and the night."""
    if night_shift:
        local_h = rng.uniform(20.0, 24.0)  # night shift
    else:
        local_h = rng.uniform(5.0, 13.0)
    return DAY + timedelta(hours=local_h - 8.0 + 24.0 * rng.randrange(3))


def simulate(
    policy: RiskPolicy,
    vehicles: int = 240,
    seed: int = 7,
    rates: dict[str, float] = RATES_PER_H,
) -> Split:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    driving_s = night_s = 0.0
    for n in range(vehicles):
        cls = _pick(rng, CLASSES)
        prof = CLASS_PROFILES[cls]
        vehicle = Vehicle(f"V{n}", "F", cls, None, prof.tire_layout, prof.placard_kpa)
        state = VehicleState(vehicle, policy)
        risk = rng.lognormvariate(-0.18, 0.6)
        propensity = {k: rng.lognormvariate(-0.08, 0.4) for k in RATES_PER_H}
        speed_factor = min(1.12, max(0.9, rng.gauss(0.98 + 0.03 * math.log(risk), 0.03)))
        load = (
            None
            if cls in ("coach", "bus")
            else _pick(rng, (("full", 0.5), ("half", 0.2), ("empty", 0.3)))
        )
        ts = _shift_start(rng, night_shift=n % 6 == 0)
        end = ts + timedelta(hours=rng.uniform(8.0, 10.0))
        seq = 0
        while ts < end:
            stint_end = ts + timedelta(hours=rng.uniform(1.5, 3.8))
            road, speed, zones = "city", 0.0, NO_ZONES
            while ts < min(stint_end, end):
                if seq % 5 == 0:  # a new stretch every 5 fixes
                    road = _pick(rng, ROADS)
                    lo, hi = CRUISE[road]
                    speed = LIMITS[cls][road] * rng.uniform(lo, hi) * speed_factor
                    zone_kind, share = ZONES[road]
                    zones = NO_ZONES
                    if rng.random() < share:
                        zones = ZoneContext(inside=(ZoneRef(f"z{seq}", zone_kind, zone_kind),))
                seq += 1
                extra = {"load": load} if load else None
                fix = Telemetry(seq, ts, 31.3, 120.6, speed, 0.0, "D", True, None, (), extra)
                state.observe_telemetry(fix, zones)
                night = state.is_night(ts)
                driving_s += STEP_S
                night_s += STEP_S if night else 0.0
                drawn = _events(rng, rates, road, speed, night, risk, propensity)
                for kind, at_s, ev_speed in drawn:
                    seq += 1
                    level = 2 if rng.random() < LEVEL2.get(kind, 0.0) else 1
                    e_ts = ts + timedelta(seconds=at_s)
                    ev = DeviceEvent(seq, e_ts, kind, level, 31.3, 120.6, ev_speed, "D", {}, None)
                    c = state.observe_event(ev)
                    counts[c.severity] += 1
                    by_kind.setdefault(kind, Counter())[c.severity] += 1
                ts += timedelta(seconds=STEP_S)
            # A rest break of 20–45 min, ignition off (no fixes), then the next stint.
            ts += timedelta(minutes=rng.uniform(20.0, 45.0))
    return Split(counts, by_kind, night_s / driving_s, driving_s / 3600)


def _events(
    rng: random.Random,
    rates: dict[str, float],
    road: str,
    speed: float,
    night: bool,
    risk: float,
    propensity: dict[str, float],
) -> list[tuple[str, float, float]]:
    out: list[tuple[str, float, float]] = []
    for kind, base in rates.items():
        if kind in ADAS_KINDS and speed < 30.0:
            continue
        m = NIGHT_X.get(kind, 1.1) if night else 1.0
        m *= (EXPRESSWAY_X if road == "expressway" else CITY_X if road == "city" else {}).get(
            kind, 1.0
        )
        lam = base * risk * propensity[kind] * m * STEP_S / 3600
        for _ in range(_poisson(rng, lam)):
            ev_speed = speed
            if kind == "harsh_brake":
                ev_speed = max(0.0, speed - rng.uniform(10.0, 40.0))
            elif kind == "overspeed":
                ev_speed = speed * rng.uniform(1.05, 1.3)
            out.append((kind, rng.uniform(0.0, STEP_S), ev_speed))
    out.sort(key=lambda e: e[1])
    return out


@pytest.fixture(scope="module")
def split() -> Split:
    return simulate(load_policy())


def test_the_simulated_mix_is_realistic(split: Split) -> None:
    assert split.total > 10_000
    assert 0.10 <= split.night_share <= 0.20  # ~15 % of driving at night
    assert 7.0 <= split.total / split.driving_h <= 11.0  # ~8.6 events per driving hour


def test_default_policy_split_is_near_the_reference(split: Split) -> None:
    general, moderate, severe = (split.share(s) for s in ("general", "moderate", "severe"))
    print(f"\nsplit: {general:.2%} general / {moderate:.2%} moderate / {severe:.2%} severe")
    assert general >= 0.75
    assert severe < 0.01
    assert 0.08 <= moderate <= 0.22  # the reference: 14.56 %
    assert split.counts["severe"] > 0  # context does make some alarms severe


def test_crash_rollover_panic_are_always_severe_in_the_mix() -> None:
    policy = load_policy()
    # Make them frequent, so every context (speed, class, night, zone …) is drawn.
    rates = {"collision": 5.0, "rollover": 5.0, "panic_button": 5.0}
    got = simulate(policy, vehicles=20, seed=3, rates=rates)
    assert set(got.by_kind) == {"collision", "rollover", "panic_button"}
    for kind, sev in got.by_kind.items():
        assert set(sev) == {"severe"}, kind


def test_without_context_weights_the_split_is_the_base_table() -> None:
    """Control: the context factors are what moves alarms between grades."""
    policy = load_policy()
    sp = policy.severity
    flat = replace(
        sp,
        speed_points=((0.0, 0.0),),
        over_limit_points=0.0,
        class_points={},
        load_points={},
        night_points=0.0,
        zone_points={},
        recurrence_points=(0.0,),
        driving_points=((0.0, 0.0),),
    )
    got = simulate(replace(policy, severity=flat), vehicles=60, seed=11)
    for kind, severities in got.by_kind.items():
        assert set(severities) <= set(sp.events[kind]), kind
        if sp.events[kind][0] == sp.events[kind][1]:
            assert set(severities) == {sp.events[kind][0]}, kind
