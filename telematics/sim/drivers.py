"""Drivers and the safety events their units raise (pure, seeded).

Each driver has an overall riskiness (lognormal, median 1) and a per-kind propensity
(lognormal around it), so a few drivers produce most events, as in real fleets. Events
arrive as a Poisson process whose rate depends on the driving state: ADAS kinds only
above 30 km/h, driver-state (DSM), blind-spot and dynamics kinds while moving, a few
kinds whenever the ignition is on; fatigue and yawning are more frequent at night,
headway and lane keeping at expressway speed, blind-spot and harsh braking in town.

Base rates are per driving hour for an average driver (order of magnitude of what DSM
and ADAS terminals raise in commercial fleets). Alarm levels follow the active-safety
terminal standards: level 2 is the more urgent one (e.g. eye closure ≥ 2 s, time to
collision < 1.5 s).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from telematics.protocol.messages import ADAS_KINDS, EVENT_KINDS

#: Events per driving hour for an average driver.
BASE_RATES_PER_H: dict[str, float] = {
    # driver state (DSM)
    "fatigue": 0.3,
    "yawning": 1.0,
    "phone_call": 0.2,
    "smoking": 0.1,
    "distraction": 0.5,
    "driver_absent": 0.03,
    "camera_blocked": 0.02,
    "seatbelt_off": 0.1,
    # driver assistance (ADAS)
    "forward_collision": 0.2,
    "pedestrian_collision": 0.05,
    "lane_departure": 2.0,
    "headway_too_close": 1.5,
    "frequent_lane_change": 0.2,
    "road_sign_overspeed": 0.2,
    "obstacle": 0.05,
    # blind spot (BSD)
    "blind_spot_left": 0.3,
    "blind_spot_right": 0.3,
    "blind_spot_rear": 0.1,
    # vehicle dynamics
    "harsh_brake": 0.5,
    "harsh_accel": 0.3,
    "harsh_turn": 0.2,
    "overspeed": 0.3,
    "collision": 1e-4,
    "rollover": 1e-5,
    "panic_button": 1e-4,
}

#: Kinds a unit raises with the ignition on even when standing still.
STANDING_KINDS = frozenset({"panic_button", "camera_blocked", "driver_absent", "smoking"})
ADAS_MIN_KMH = 30.0
MOVING_MIN_KMH = 5.0

# Speed bands: 0 ignition off, 1 standing, 2 town (< 30), 3 30–80, 4 ≥ 80 km/h.
_BANDS = 5


def speed_band(speed_kmh: float, ignition: bool) -> int:
    if not ignition:
        return 0
    if speed_kmh < MOVING_MIN_KMH:
        return 1
    if speed_kmh < ADAS_MIN_KMH:
        return 2
    return 3 if speed_kmh < 80.0 else 4


def _modifier(kind: str, band: int, night: bool) -> float:
    """Situation multiplier of a kind's rate (0 = cannot happen in this situation)."""
    if band == 0:
        return 0.0
    if band == 1 and kind not in STANDING_KINDS:
        return 0.0
    if band < 3 and kind in ADAS_KINDS:
        return 0.0
    m = 1.0
    if night:
        m *= {"fatigue": 3.0, "yawning": 2.0, "distraction": 1.5, "lane_departure": 1.5,
              "headway_too_close": 1.2}.get(kind, 1.1)  # fmt: skip
    if band == 4:
        m *= {"fatigue": 1.5, "lane_departure": 1.3, "headway_too_close": 1.5,
              "forward_collision": 1.3, "overspeed": 2.0, "harsh_turn": 0.3,
              "pedestrian_collision": 0.1, "blind_spot_right": 0.6}.get(kind, 1.0)  # fmt: skip
    elif band == 2:
        m *= {"blind_spot_right": 2.0, "blind_spot_left": 1.5, "harsh_brake": 1.5,
              "harsh_turn": 2.0, "overspeed": 0.2}.get(kind, 1.0)  # fmt: skip
    return m


@dataclass(frozen=True, slots=True)
class Driver:
    id: str
    risk: float  # overall multiplier, median 1
    propensity: dict[str, float] = field(default_factory=dict)  # per-kind multiplier
    speed_factor: float = 1.0  # how fast they like to drive relative to traffic


def make_driver(number: int, rng: random.Random) -> Driver:
    # lognormal with mean 1 (mu = -sigma²/2): the fleet average matches the base rates
    risk = rng.lognormvariate(-0.18, 0.6)
    propensity = {k: rng.lognormvariate(-0.08, 0.4) for k in BASE_RATES_PER_H}
    speed = min(1.12, max(0.9, rng.gauss(0.98 + 0.03 * math.log(risk), 0.03)))
    return Driver(f"D-{number:04d}", risk, propensity, speed)


@dataclass(frozen=True, slots=True)
class EventDraw:
    kind: str
    level: int | None
    attrs: dict[str, Any]
    speed_kmh: float | None = None  # the speed the event implies (overspeed, harsh braking)


class _Table:
    """Per-situation total rate (per second) and cumulative weights over kinds."""

    __slots__ = ("cum", "kinds", "total")

    def __init__(self, driver: Driver | None, band: int, night: bool) -> None:
        kinds: list[str] = []
        weights: list[float] = []
        for kind, base in BASE_RATES_PER_H.items():
            w = base * _modifier(kind, band, night)
            if driver is not None:
                w *= driver.risk * driver.propensity.get(kind, 1.0)
            if w > 0.0:
                kinds.append(kind)
                weights.append(w)
        self.kinds = kinds
        self.cum = list(itertools.accumulate(weights))
        self.total = (self.cum[-1] if self.cum else 0.0) / 3600.0


class EventGenerator:
    """Decides when a unit raises a driver/vehicle event and which one.

    Rate mode (default): a Poisson process with the driver's situational rates,
    integrated over simulated time. Interval mode (``interval_s=(a, b)``): exactly one
    event every ``uniform(a, b)`` seconds of the clock passed as ``now``, its kind drawn
    with the same relative weights among the kinds possible in the current situation
    (postponed while the vehicle is not moving).
    """

    __slots__ = ("_due", "_hazard", "_interval", "_rng", "_tables", "_threshold", "driver")

    def __init__(
        self,
        driver: Driver,
        rng: random.Random,
        interval_s: tuple[float, float] | None = None,
        now: float = 0.0,
    ) -> None:
        self.driver = driver
        self._rng = rng
        self._interval = interval_s
        self._tables: list[_Table | None] = [None] * (2 * _BANDS)
        self._hazard = 0.0
        self._threshold = rng.expovariate(1.0)
        self._due = now + rng.uniform(*interval_s) if interval_s else math.inf

    def set_driver(self, driver: Driver) -> None:
        self.driver = driver
        self._tables = [None] * (2 * _BANDS)

    def _table(self, band: int, night: bool) -> _Table:
        key = band + band + night
        table = self._tables[key]
        if table is None:
            # interval mode draws kinds with the population weights, not the driver's
            table = _Table(None if self._interval else self.driver, band, night)
            self._tables[key] = table
        return table

    def step(
        self, dt: float, now: float, speed_kmh: float, ignition: bool, night: bool
    ) -> str | None:
        """The kind of event raised during the last ``dt`` simulated seconds, if any.

        ``now`` is the clock used by interval mode (the simulator passes wall time).
        """
        band = speed_band(speed_kmh, ignition)
        if self._interval is not None:
            if now < self._due or band < 2:  # due, and driving (not a parked smoker)
                return None
            table = self._table(band, night)
            if not table.kinds:
                return None
            self._due = now + self._rng.uniform(*self._interval)
            return self._pick(table)
        table = self._table(band, night)
        if table.total == 0.0:
            return None
        self._hazard += table.total * dt
        if self._hazard < self._threshold:
            return None
        self._hazard = 0.0
        self._threshold = self._rng.expovariate(1.0)
        return self._pick(table)

    def _pick(self, table: _Table) -> str:
        x = self._rng.random() * table.cum[-1]
        return table.kinds[min(bisect.bisect_right(table.cum, x), len(table.kinds) - 1)]


def describe(kind: str, rng: random.Random, speed_kmh: float, limit_kmh: float) -> EventDraw:
    """Alarm level and ``attrs`` for an event of ``kind`` in the current situation."""
    u = rng.uniform
    level: int | None = 1
    attrs: dict[str, Any]
    if kind == "fatigue":
        level = 2 if rng.random() < 0.2 else 1
        closure = u(2.0, 4.0) if level == 2 else u(0.8, 1.9)
        attrs = {"eye_closure_s": round(closure, 1), "perclos": round(u(0.15, 0.45), 2)}
    elif kind == "yawning":
        attrs = {"duration_s": round(u(2.0, 6.0), 1)}
    elif kind == "phone_call":
        level = 2 if rng.random() < 0.3 else 1
        attrs = {"duration_s": round(u(3.0, 60.0), 1)}
    elif kind == "smoking":
        attrs = {"duration_s": round(u(5.0, 120.0), 1)}
    elif kind == "distraction":
        level = 2 if rng.random() < 0.2 else 1
        attrs = {"gaze": rng.choice(("left", "right", "down")),
                 "duration_s": round(u(2.0, 5.0) if level == 2 else u(1.0, 2.5), 1)}  # fmt: skip
    elif kind == "driver_absent":
        level = 2
        attrs = {"duration_s": round(u(5.0, 30.0), 1)}
    elif kind == "camera_blocked":
        attrs = {"camera": "dsm"}
    elif kind == "seatbelt_off":
        attrs = {"duration_s": round(u(10.0, 120.0), 1)}
    elif kind in ("forward_collision", "pedestrian_collision", "obstacle"):
        ttc = round(u(0.7, 2.7), 2)
        level = 2 if ttc < 1.5 else 1
        target = {"forward_collision": "vehicle", "pedestrian_collision": "pedestrian"}
        attrs = {"ttc_s": ttc, "target": target.get(kind, "object"),
                 "distance_m": round(ttc * speed_kmh / 3.6 * u(0.3, 0.9), 1)}  # fmt: skip
    elif kind == "lane_departure":
        level = 2 if rng.random() < 0.15 else 1
        attrs = {"side": rng.choice(("left", "right")),
                 "lateral_speed_mps": round(u(0.2, 0.9), 2), "turn_signal": False}  # fmt: skip
    elif kind == "headway_too_close":
        headway = round(u(0.3, 1.2), 2)
        level = 2 if headway < 0.6 else 1
        attrs = {"headway_s": headway,
                 "distance_m": round(headway * speed_kmh / 3.6, 1)}  # fmt: skip
    elif kind == "frequent_lane_change":
        attrs = {"changes": rng.randint(3, 6), "window_s": 60}
    elif kind == "road_sign_overspeed":  # a lower posted limit than the road's usual one
        over = u(0.05, 0.35)
        level = 2 if over >= 0.2 else 1
        limit = max(20.0, math.floor(speed_kmh / (1.0 + over) / 10.0) * 10.0)
        attrs = {"limit_kmh": limit, "over_pct": round(max(0.0, speed_kmh / limit - 1) * 100, 1)}
    elif kind == "overspeed":  # the vehicle's configured limit for the road, exceeded
        over = u(0.05, 0.3)
        level = 2 if over >= 0.2 else 1
        speed = round(max(speed_kmh, limit_kmh * (1.0 + over)), 1)
        attrs = {"limit_kmh": limit_kmh, "over_pct": round((speed / limit_kmh - 1) * 100, 1)}
        return EventDraw(kind, level, attrs, speed)
    elif kind.startswith("blind_spot_"):
        level = 2 if rng.random() < 0.2 else 1
        attrs = {"target": rng.choice(("vehicle", "vehicle", "cyclist", "pedestrian")),
                 "distance_m": round(u(0.5, 4.0), 1)}  # fmt: skip
    elif kind == "harsh_brake":
        g = round(u(0.3, 0.7), 2)
        level = 2 if g >= 0.5 else 1
        attrs = {"decel_g": g}
        after = max(0.0, speed_kmh - g * 9.81 * u(1.0, 2.5) * 3.6)
        return EventDraw(kind, level, attrs, round(after, 1))
    elif kind == "harsh_accel":
        attrs = {"accel_g": round(u(0.25, 0.45), 2)}
    elif kind == "harsh_turn":
        g = round(u(0.3, 0.6), 2)
        level = 2 if g >= 0.45 else 1
        attrs = {"lateral_g": g}
    elif kind == "collision":
        level = 2
        attrs = {"accel_g": round(u(2.0, 8.0), 1)}
    elif kind == "rollover":
        level = 2
        attrs = {"roll_deg": round(u(35.0, 90.0), 1)}
    elif kind == "panic_button":
        level = 2
        attrs = {}
    else:  # pragma: no cover - every v1 kind is handled above
        assert kind in EVENT_KINDS, kind
        attrs = {}
    return EventDraw(kind, level, attrs)
