"""The hidden truth behind collisions: who crashes after which alarm (pure, vectorised).

Shared by the live simulator (one alarm at a time, :class:`CrashModel`) and the offline
generator ``ml/synth.py`` (a million at once): both call :func:`collision_logit`, so the
two draw collisions from the very same model. ``ml/README.md`` writes it out.

An alarm is followed by a collision (or a rollover) within :data:`HORIZON_S` with
probability ``sigmoid(z)``, where ``z`` sums what a unit observes (kind, level, speed,
class, load, night, zone, recurrence, driving time, tires) and what no deployment can
see: the driver's hidden riskiness (the same ``Driver.risk`` that makes them raise more
alarms), the vehicle's hidden condition (brakes, steering, ...) and per-alarm noise
(traffic, weather, luck). The observable part deliberately differs from the rules'
points model: fatigue is far worse at night after hours at the wheel, a phone call
matters at speed and hardly at a crawl, a close headway at speed is worse than the rules
say, while the hazmat class and recurrence alone count for less than they are given.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from telematics.fleet import VEHICLE_CLASSES
from telematics.protocol.messages import DERIVED_KINDS, EVENT_KINDS

#: An alarm is positive when a collision follows within this horizon.
HORIZON_S = 1800.0
#: Outcomes: these are what the model predicts, never alarms it grades.
OUTCOME_KINDS = ("collision", "rollover")
#: Every kind the truth knows, in a fixed order (the index used by the arrays below).
KINDS: tuple[str, ...] = tuple(sorted((EVENT_KINDS | DERIVED_KINDS) - set(OUTCOME_KINDS)))
KIND_INDEX: dict[str, int] = {k: i for i, k in enumerate(KINDS)}
CLASS_INDEX: dict[str, int] = {c: i for i, c in enumerate(VEHICLE_CLASSES)}

#: Overall level: sets the fleet's collision rate after an alarm to about 1.5 %.
INTERCEPT = -6.0
#: Hidden effects (logit units): driver (× log of Driver.risk), vehicle sd, per-alarm sd.
DRIVER_WEIGHT = 0.8
VEHICLE_SD = 0.35
NOISE_SD = 0.6
#: Crashes come soon after their alarm: exponential delay with this mean, cut at the horizon.
CRASH_DELAY_MEAN_S = 480.0


def _table(values: Mapping[str, float], default: float) -> NDArray[np.float64]:
    unknown = set(values) - set(KINDS)
    assert not unknown, unknown
    return np.array([values.get(k, default) for k in KINDS], dtype=np.float64)


KIND_LOGIT = _table(
    {
        "fatigue": 0.9, "yawning": 0.0, "phone_call": 0.5, "smoking": -0.6,
        "distraction": 0.5, "driver_absent": -0.3, "camera_blocked": -0.8,
        "seatbelt_off": -0.3, "forward_collision": 1.1, "pedestrian_collision": 1.0,
        "lane_departure": 0.1, "headway_too_close": 0.3, "frequent_lane_change": 0.2,
        "road_sign_overspeed": -0.2, "obstacle": 0.6, "blind_spot_left": -0.1,
        "blind_spot_right": 0.2, "blind_spot_rear": -0.4, "harsh_brake": 0.4,
        "harsh_accel": -0.4, "harsh_turn": 0.2, "overspeed": 0.0, "panic_button": 0.3,
        "tire_pressure_high": -0.8, "tire_pressure_low": -0.3, "tire_temp_high": 0.2,
        "tire_fast_leak": 1.0, "tire_sensor_fault": -1.0, "tire_slow_leak": -0.4,
        "tire_imbalance": -0.6, "driving_time": 0.4, "hazmat_restricted_zone": -0.2,
    },
    0.0,
)  # fmt: skip
#: Extra logit of a level-2 (more urgent) alarm of the kind.
LEVEL2_LOGIT = _table(
    {"fatigue": 0.7, "headway_too_close": 0.8, "forward_collision": 0.7, "lane_departure": 0.5,
     "distraction": 0.5, "phone_call": 0.4, "smoking": 0.0, "harsh_brake": 0.5},
    0.3,
)  # fmt: skip
#: How strongly speed raises the kind's risk (times (speed − 50) / 30, bounded).
SPEED_SENSITIVITY = _table(
    {"phone_call": 0.7, "distraction": 0.6, "headway_too_close": 0.8, "forward_collision": 0.5,
     "fatigue": 0.5, "lane_departure": 0.5, "tire_fast_leak": 0.6, "smoking": 0.1,
     "seatbelt_off": 0.1, "camera_blocked": 0.0, "driver_absent": 0.6,
     "pedestrian_collision": -0.2, "blind_spot_left": 0.0, "blind_spot_right": 0.0,
     "blind_spot_rear": 0.0},
    0.35,
)  # fmt: skip
#: How much the kind is a sign of a tired driver (weighs night × long driving).
FATIGUE_LIKE = _table(
    {"fatigue": 1.0, "yawning": 0.7, "lane_departure": 0.6, "distraction": 0.4,
     "driving_time": 0.8, "headway_too_close": 0.3},
    0.0,
)  # fmt: skip
#: Kinds whose repetition within 30 minutes says the driver is getting worse.
ESCALATING = _table({"fatigue": 1.0, "phone_call": 1.0, "distraction": 1.0, "yawning": 1.0}, 0.0)
#: Kinds a school zone makes worse (children, cyclists at the kerb).
VULNERABLE = _table(
    {"pedestrian_collision": 1.0, "blind_spot_left": 1.0, "blind_spot_right": 1.0,
     "blind_spot_rear": 1.0, "harsh_brake": 1.0, "obstacle": 1.0},
    0.0,
)  # fmt: skip
PHONE = _table({"phone_call": 1.0}, 0.0)
CLASS_LOGIT = np.array([{"coach": 0.0, "bus": 0.25, "hazmat": 0.1, "freight": 0.3}[c]
                        for c in VEHICLE_CLASSES])  # fmt: skip
HEAVY = np.array([c in ("hazmat", "freight") for c in VEHICLE_CLASSES])

#: Share of level-2 alarms per kind, as ``sim.drivers.describe`` draws them.
LEVEL2_SHARE: dict[str, float] = {
    "fatigue": 0.2, "phone_call": 0.3, "distraction": 0.2, "driver_absent": 1.0,
    "forward_collision": 0.4, "pedestrian_collision": 0.4, "obstacle": 0.4,
    "lane_departure": 0.15, "headway_too_close": 1 / 3, "road_sign_overspeed": 0.5,
    "overspeed": 1 / 3, "blind_spot_left": 0.2, "blind_spot_right": 0.2,
    "blind_spot_rear": 0.2, "harsh_brake": 0.5, "harsh_turn": 0.5, "panic_button": 1.0,
}  # fmt: skip


def collision_logit(
    *,
    kind: NDArray[np.intp],
    level2: NDArray[np.bool_],
    speed_kmh: NDArray[np.float64],
    vehicle_class: NDArray[np.intp],
    load_full: NDArray[np.bool_],
    load_half: NDArray[np.bool_],
    night: NDArray[np.bool_],
    school: NDArray[np.bool_],
    tunnel: NDArray[np.bool_],
    flood_prone: NDArray[np.bool_],
    depot: NDArray[np.bool_],
    hazmat_zone: NDArray[np.bool_],
    recurrence: NDArray[np.float64],
    recent_alarms: NDArray[np.float64],
    continuous_h: NDArray[np.float64],
    tire_conditions: NDArray[np.float64],
    driver_log_risk: NDArray[np.float64],
    vehicle_effect: NDArray[np.float64],
    noise: NDArray[np.float64],
    ops: Any = None,
) -> NDArray[np.float64]:
    """Log-odds of a collision within the horizon after each alarm (all arrays, one row
    per alarm; ``kind`` indexes :data:`KINDS`, ``vehicle_class`` ``VEHICLE_CLASSES``).

    ``ops``: :data:`ARRAYS` (numpy), or :data:`SCALARS` to grade one alarm of plain
    Python numbers with the very same formula (numpy costs ~10x more per scalar).
    """
    o = ops or ARRAYS
    g = o.clip((speed_kmh - 50.0) / 30.0, -1.5, 1.7)
    fast = speed_kmh > 60.0
    cont = o.clip(continuous_h, 0.0, 8.0)
    long_stint = 1.0 / (1.0 + o.exp(-2.0 * (cont - 3.0)))
    heavy = o.heavy[vehicle_class]
    z = INTERCEPT + o.kind_logit[kind] + o.level2_logit[kind] * level2
    z = z + o.speed_sensitivity[kind] * g + 0.6 * o.phone[kind] * fast
    z = z + o.fatigue_like[kind] * (1.1 * night * long_stint + 0.25 * cont)
    z = z + o.class_logit[vehicle_class] + heavy * (0.25 * load_full + 0.1 * load_half)
    z = z + 0.2 * night
    z = z + school * (0.2 + 0.9 * o.vulnerable[kind] * (speed_kmh > 30.0))
    z = z + 0.35 * tunnel + 0.5 * flood_prone * night - 1.2 * depot + 0.15 * hazmat_zone
    log_rec = o.log(o.maximum(recurrence, 1.0))
    z = z + (0.05 + 0.25 * o.escalating[kind]) * log_rec
    z = z + 0.12 * o.log(o.maximum(recent_alarms, 1.0))
    z = z + 0.35 * o.minimum(tire_conditions, 2.0) * fast
    out: NDArray[np.float64] = z + DRIVER_WEIGHT * driver_log_risk + vehicle_effect + noise
    return out


def sigmoid(z: NDArray[np.float64], ops: Any = None) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 1.0 / (1.0 + (ops or ARRAYS).exp(-z))
    return out


def _clip(x: float, low: float, high: float) -> float:
    return low if x < low else high if x > high else x


def _ops(clip: Any, exp: Any, log: Any, maximum: Any, minimum: Any, table: Any) -> Any:
    return SimpleNamespace(
        clip=clip, exp=exp, log=log, maximum=maximum, minimum=minimum,
        kind_logit=table(KIND_LOGIT), level2_logit=table(LEVEL2_LOGIT),
        speed_sensitivity=table(SPEED_SENSITIVITY), fatigue_like=table(FATIGUE_LIKE),
        escalating=table(ESCALATING), vulnerable=table(VULNERABLE), phone=table(PHONE),
        class_logit=table(CLASS_LOGIT), heavy=table(HEAVY),
    )  # fmt: skip


#: What :func:`collision_logit` computes with: numpy over arrays of alarms, or plain
#: floats (``math``, lists) for one.
ARRAYS = _ops(np.clip, np.exp, np.log, np.maximum, np.minimum, lambda t: t)
SCALARS = _ops(_clip, math.exp, math.log, max, min, lambda t: t.tolist())


def crash_delay_s(u: float) -> float:
    """Time from the alarm to the crash for a uniform ``u``: exponential, within the horizon."""
    return min(HORIZON_S - 1.0, -CRASH_DELAY_MEAN_S * math.log(1.0 - u))


def vehicle_effect(rng: random.Random) -> float:
    """A vehicle's hidden condition (brakes, steering, ...) in logit units."""
    return rng.gauss(0.0, VEHICLE_SD)


class CrashModel:
    """The live simulator's side: after each alarm a unit raises, maybe a crash later.

    Keeps the little the unit needs (recent alarms for recurrence) and draws from its own
    RNG, so the simulator's other random streams, and its tests, are unchanged.
    """

    __slots__ = ("_recent", "driver_log_risk", "rng", "vehicle_class", "vehicle_effect")

    def __init__(self, vehicle_class: str, rng: random.Random) -> None:
        self.rng = rng
        self.vehicle_class = CLASS_INDEX.get(vehicle_class, 0)
        self.vehicle_effect = vehicle_effect(rng)
        self.driver_log_risk = 0.0
        self._recent: deque[tuple[float, str]] = deque()

    def after_alarm(
        self,
        kind: str,
        level: int | None,
        t: float,
        speed_kmh: float,
        night: bool,
        continuous_h: float,
        tire_conditions: int,
    ) -> float | None:
        """Seconds until the crash this alarm leads to, or None (most of the time)."""
        k = KIND_INDEX.get(kind)
        if k is None:  # a crash itself, or a kind the truth does not grade
            return None
        recent = self._recent
        recent.append((t, kind))
        while recent and recent[0][0] <= t - HORIZON_S:
            recent.popleft()
        same = sum(1 for _, other in recent if other == kind)
        # One alarm of plain numbers (SCALARS): this runs for every alarm of thousands
        # of live units; the training generator grades arrays of them (ARRAYS).
        scalars: Any = {
            "kind": k,
            "level2": level == 2,
            "speed_kmh": float(speed_kmh),
            "vehicle_class": self.vehicle_class,
            "load_full": False,
            "load_half": False,
            "night": night,
            "school": False,
            "tunnel": False,
            "flood_prone": False,
            "depot": False,
            "hazmat_zone": False,
            "recurrence": float(same),
            "recent_alarms": float(len(recent)),
            "continuous_h": float(continuous_h),
            "tire_conditions": float(tire_conditions),
            "driver_log_risk": self.driver_log_risk,
            "vehicle_effect": self.vehicle_effect,
            "noise": self.rng.gauss(0.0, NOISE_SD),
        }
        if self.rng.random() >= sigmoid(collision_logit(**scalars, ops=SCALARS), SCALARS):
            return None
        return crash_delay_s(self.rng.random())

    def outcome_kind(self, kind: str) -> str:
        """Heavy vehicles that turned harshly roll over a third of the time."""
        heavy = bool(HEAVY[self.vehicle_class])
        if kind == "harsh_turn" and heavy and self.rng.random() < 1 / 3:
            return "rollover"
        return "collision"
