"""Harsh braking / acceleration and overspeed, derived from consecutive fixes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from telematics.classify.risk_policy import DynamicsPolicy, OverspeedPolicy
from telematics.errors import UsageError

HARSH_BRAKE, HARSH_ACCEL, OVERSPEED = "harsh_brake", "harsh_accel", "overspeed"
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQ = 111_320.0


@dataclass(slots=True)  # not frozen: frozen __init__ costs a setattr call per field
class Fix:
    t: float  # epoch seconds
    lat: float
    lon: float
    speed_kmh: float


@dataclass(frozen=True, slots=True)
class Harsh:
    kind: str
    level: int
    mps2: float  # magnitude
    from_kmh: float
    to_kmh: float
    dt_s: float
    rise: bool  # level 2 reached within an episode already reported at level 1

    def detail(self) -> str:
        sign = "−" if self.kind == HARSH_BRAKE else "+"
        what = self.kind.replace("_", " ")
        return (
            f"{what} L{self.level} {sign}{self.mps2:.1f} m/s², "
            f"{self.from_kmh:.0f}→{self.to_kmh:.0f} km/h in {self.dt_s:.0f} s"
        )


def _metres(a: Fix, b: Fix) -> float:
    """Equirectangular distance: exact enough over the few seconds between fixes."""
    dy = (b.lat - a.lat) * _M_PER_DEG_LAT
    dx = (b.lon - a.lon) * _M_PER_DEG_LON_EQ * math.cos(math.radians((a.lat + b.lat) / 2))
    return math.hypot(dx, dy)


def _per_class(table: Mapping[str, float], vehicle_class: str, what: str) -> float:
    try:
        return table[vehicle_class]
    except KeyError:
        raise UsageError(f"{what}: no threshold for vehicle class {vehicle_class!r}") from None


class HarshDetector:
    """Fires at the onset of a harsh episode and once more if it reaches level 2.

    The speed change is judged only between fixes ``min_dt_s``..``max_dt_s`` apart. A
    pair whose acceleration no heavy vehicle can reach, or whose positions moved much
    more or less than the speeds imply, is a GNSS glitch: skipped, and the glitchy fix
    does not become the reference for the next one.
    """

    def __init__(self, policy: DynamicsPolicy, vehicle_class: str) -> None:
        self.policy = policy
        self.brake_mps2 = _per_class(policy.harsh_brake_mps2, vehicle_class, "harsh_brake")
        self.accel_mps2 = _per_class(policy.harsh_accel_mps2, vehicle_class, "harsh_accel")
        self._ref: Fix | None = None
        self._episode: dict[str, int] = {}  # kind → level already reported this episode

    def update(self, fix: Fix) -> list[Harsh]:
        p = self.policy
        ref = self._ref
        if ref is None or fix.t - ref.t > p.max_dt_s:
            self._ref = fix
            self._episode.clear()
            return []
        dt = fix.t - ref.t
        if dt < p.min_dt_s:
            return []  # wait for a fix far enough from the reference
        a = (fix.speed_kmh - ref.speed_kmh) / 3.6 / dt
        if abs(a) > p.max_plausible_mps2 or self._jumped(ref, fix, dt):
            return []
        self._ref = fix
        if -a < self.brake_mps2 and a < self.accel_mps2:  # nearly every pair: no episode
            if self._episode:
                self._episode.clear()
            return []
        out: list[Harsh] = []
        for kind, value, threshold in (
            (HARSH_BRAKE, -a, self.brake_mps2),
            (HARSH_ACCEL, a, self.accel_mps2),
        ):
            if value < threshold:
                self._episode.pop(kind, None)
                continue
            level = 2 if value >= threshold * p.level2_ratio else 1
            before = self._episode.get(kind, 0)
            if level > before:
                self._episode[kind] = level
                rise = before > 0
                out.append(Harsh(kind, level, value, ref.speed_kmh, fix.speed_kmh, dt, rise))
        return out

    def _jumped(self, a: Fix, b: Fix, dt: float) -> bool:
        expected = (a.speed_kmh + b.speed_kmh) / 2 / 3.6 * dt
        return abs(_metres(a, b) - expected) > self.policy.jump_tolerance_m + 0.5 * expected


@dataclass(frozen=True, slots=True)
class Overspeed:
    level: int
    speed_kmh: float
    limit_kmh: float
    over_s: float
    zone_limit: bool  # the limit came from a zone, not the class's road default
    rise: bool  # level 2 reached within an episode already reported at level 1

    def detail(self) -> str:
        where = "zone" if self.zone_limit else "road"
        return (
            f"overspeed L{self.level} {self.speed_kmh:.0f} km/h over the {self.limit_kmh:.0f} "
            f"km/h {where} limit for {self.over_s:.0f} s"
        )


class OverspeedDetector:
    """Above limit + tolerance for ``min_duration_s``: one alarm per episode (plus one if it
    reaches level 2); the episode ends once the speed is back at or under the limit."""

    def __init__(self, policy: OverspeedPolicy, vehicle_class: str) -> None:
        self.policy = policy
        self.road_limit_kmh = _per_class(policy.road_limit_kmh, vehicle_class, "overspeed")
        self._since: float | None = None  # start of the current run above limit + tolerance
        self._last_t: float | None = None
        self._level = 0  # reported in this episode; 0 = no episode

    @property
    def active(self) -> bool:
        return self._level > 0

    def update(self, t: float, speed_kmh: float, zone_limit_kmh: float | None) -> Overspeed | None:
        p = self.policy
        limit = self.road_limit_kmh if zone_limit_kmh is None else zone_limit_kmh
        if self._last_t is not None and t - self._last_t > p.max_gap_s:
            self._since = None  # silence: "continuously above" is no longer proven
        self._last_t = t
        if speed_kmh <= limit:
            self._since, self._level = None, 0
            return None
        if speed_kmh <= limit + p.tolerance_kmh:
            self._since = None
            return None
        if self._since is None:
            self._since = t
        over_s = t - self._since
        if over_s < p.min_duration_s:
            return None
        level = 2 if speed_kmh >= limit * (1 + p.level2_over_ratio) else 1
        if level <= self._level:
            return None
        rise, self._level = self._level > 0, level
        return Overspeed(level, speed_kmh, limit, over_s, zone_limit_kmh is not None, rise)
