"""The versioned risk policy: every threshold and weight of detection and grading.

The defaults live in ``policy.json`` next to this module, not in code. A custom file
names its own ``version`` and overrides any part of the defaults (objects merge key by
key, lists and scalars replace). Everything is validated once, at load, with errors that
name the offending setting.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta, timezone, tzinfo
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telematics.classify.rules import Rules
from telematics.config import read_json_object
from telematics.errors import ConfigError
from telematics.fleet import VEHICLE_CLASSES
from telematics.geo.context import ZONE_KINDS
from telematics.protocol.messages import DERIVED_KINDS, EVENT_KINDS, SEVERITIES

#: Every kind the grader may see: the device contract plus the server's derived kinds.
GRADED_KINDS: frozenset[str] = EVENT_KINDS | DERIVED_KINDS
LOADS: tuple[str, ...] = ("empty", "half", "full", "unknown")
_SEV_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True, slots=True)
class TirePolicy:
    """Tire thresholds (the same meaning as in :class:`Rules`) plus axle imbalance."""

    low_pressure_ratio: float
    low_pressure_moderate_ratio: float
    high_pressure_ratio: float
    high_temp_c: float
    severe_temp_c: float
    slow_leak_kpa_per_min: float
    leak_window_s: float
    slow_leak_min_span_s: float
    fast_leak_kpa_per_min: float
    fast_leak_window_s: float
    fast_leak_severe_speed_kmh: float
    clear_margin: float
    imbalance_ratio: float  # (highest − lowest) / highest cold kPa on one axle
    imbalance_max_skew_s: float  # readings further apart than this are not compared

    def rules(self, version: str, cooldown_s: float) -> Rules:
        """The :class:`Rules` the existing TireMonitor reads (validated there too)."""
        values = {k: getattr(self, k) for k in _RULES_TIRE_FIELDS}
        return Rules(version=version, cooldown_s=cooldown_s, **values)


_RULES_TIRE_FIELDS = tuple(
    f
    for f in TirePolicy.__dataclass_fields__
    if f not in ("imbalance_ratio", "imbalance_max_skew_s")
)


@dataclass(frozen=True, slots=True)
class DynamicsPolicy:
    """Harsh braking / acceleration from the speed change between consecutive fixes."""

    harsh_brake_mps2: Mapping[str, float]  # per vehicle class
    harsh_accel_mps2: Mapping[str, float]
    level2_ratio: float  # level 2 at this multiple of the class threshold
    min_dt_s: float  # closer fixes turn speed rounding into fake g-forces
    max_dt_s: float  # further apart, the change is averaged over too long to judge
    max_plausible_mps2: float  # beyond what a loaded heavy vehicle can do: a GNSS glitch
    max_plausible_kmh: float
    jump_tolerance_m: float  # displacement may differ this much from speed × time


@dataclass(frozen=True, slots=True)
class OverspeedPolicy:
    road_limit_kmh: Mapping[str, float]  # per class, where no zone sets a limit
    tolerance_kmh: float
    min_duration_s: float
    max_gap_s: float  # a longer silence breaks the "continuously above" proof
    level2_over_ratio: float  # level 2 at limit × (1 + this)


@dataclass(frozen=True, slots=True)
class DrivingPolicy:
    timezone: str
    night_start_h: float
    night_end_h: float
    moving_kmh: float
    rest_s: float  # a stop at least this long is a rest break
    continuous_limit_s: float
    night_limit_s: float  # continuous driving at night, for night_limit_classes
    night_limit_classes: frozenset[str]
    max_fix_gap_s: float  # a silent unit this long had its ignition off: counted as stopped
    history_s: float  # speed and position history kept

    @property
    def tz(self) -> tzinfo:
        return _tz(self.timezone)


@dataclass(frozen=True, slots=True)
class SilencePolicy:
    """The ``unit_silent`` alarm (``telematics/silence.py``): a unit whose last fix showed
    the vehicle moving and from which nothing has arrived for ``silent_after_s``."""

    silent_after_s: float
    moving_kmh: float  # a slower last fix is a vehicle parked at the end of a shift
    severe_classes: frozenset[str]  # severe whatever the context (else the events table's)


@dataclass(frozen=True, slots=True)
class RecurrencePolicy:
    window_s: float  # "3rd in 30 min"
    merge_s: float  # re-raises closer than this are one occurrence
    retention_s: float  # the longest window recent_count can answer
    max_per_kind: int


@dataclass(frozen=True, slots=True)
class SeverityPolicy:
    """Points model: base points of the kind's severity by level, plus context points."""

    events: Mapping[str, tuple[str, str]]  # kind → (level 1 or none, level 2)
    always_severe: frozenset[str]
    base_points: Mapping[str, float]  # severity → points
    over_limit_points: float  # above the limit in force (+ overspeed tolerance)
    moderate_at: float
    severe_at: float
    speed_points: tuple[tuple[float, float], ...]  # (from km/h, points), ascending
    class_points: Mapping[str, float]
    load_points: Mapping[str, float]
    night_points: float
    zone_points: Mapping[str, float]  # the worst zone inside counts, not the sum
    zone_classes: Mapping[str, frozenset[str]]  # zone kind → the only classes it weighs on
    recurrence_points: tuple[float, ...]  # 1st, 2nd, 3rd … in the window; the last repeats
    driving_points: tuple[tuple[float, float], ...]  # (from continuous s, points), ascending


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    version: str
    cooldown_s: float
    tires: TirePolicy
    dynamics: DynamicsPolicy
    overspeed: OverspeedPolicy
    driving: DrivingPolicy
    silence: SilencePolicy
    recurrence: RecurrencePolicy
    severity: SeverityPolicy

    @property
    def imbalance_ratio(self) -> float:
        return self.tires.imbalance_ratio

    def tire_rules(self) -> Rules:
        return self.tires.rules(self.version, self.cooldown_s)


def load_policy(path: str | None = None) -> RiskPolicy:
    """The packaged defaults, or a JSON file overriding them (it must name its version)."""
    defaults = _packaged()
    if path is None:
        return policy_from(defaults)
    data = read_json_object(path, "policy file")
    try:
        if "version" not in data:
            # Alarms record the policy version: an edited policy must not pose as the default.
            raise ConfigError("version: a custom policy must name its own version")
        return policy_from(_merge(defaults, data))
    except ConfigError as exc:
        raise ConfigError(f"policy file {path}: {exc}") from exc


def policy_from(data: Any) -> RiskPolicy:
    """Build and validate a complete policy from its JSON form."""
    top = _Obj(data, "")
    policy = RiskPolicy(
        version=top.text("version"),
        cooldown_s=top.num("cooldown_s", lo=0),
        tires=_tires(top.obj("tires")),
        dynamics=_dynamics(top.obj("dynamics")),
        overspeed=_overspeed(top.obj("overspeed")),
        driving=_driving(top.obj("driving")),
        silence=_silence(top.obj("silence")),
        recurrence=_recurrence(top.obj("recurrence")),
        severity=_severity(top.obj("severity")),
    )
    top.done()
    try:
        policy.tire_rules()
    except ConfigError as exc:
        raise ConfigError(f"tires: {exc}") from exc
    return policy


@cache
def _packaged_text() -> str:
    return resources.files("telematics.classify").joinpath("policy.json").read_text("utf-8")


def _packaged() -> dict[str, Any]:
    data = json.loads(_packaged_text())
    assert isinstance(data, dict)
    return data


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@cache
def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        if name == "Asia/Shanghai":  # no DST since 1991: exact without tzdata (slim images)
            return timezone(timedelta(hours=8), "CST")
        if name == "UTC":
            return UTC
        raise ConfigError(f"driving.timezone: unknown time zone {name!r} ({exc})") from exc


class _Obj:
    """One JSON object being read: every error names the setting's path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'top level'}: must be a JSON object")
        self.data: dict[str, Any] = data
        self.path = path
        self._seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise ConfigError(f"{self.at(key)}: missing")
        self._seen.add(key)
        return self.data[key]

    def num(self, key: str, lo: float | None = None, hi: float | None = None) -> float:
        return _number(self.raw(key), self.at(key), lo, hi)

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.at(key)}: must be a non-empty string, got {value!r}")
        return value

    def obj(self, key: str) -> _Obj:
        return _Obj(self.raw(key), self.at(key))

    def names(self, key: str, allowed: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.at(key)}: must be a list of names")
        _known(value, allowed, self.at(key))
        return frozenset(value)

    def table(
        self, key: str, keys: tuple[str, ...], *, complete: bool, lo: float | None = None
    ) -> Mapping[str, float]:
        """An object of name → number; ``complete`` requires every name of ``keys``."""
        sub = self.obj(key)
        _known(sub.data, keys, sub.path)
        if complete:
            missing = [k for k in keys if k not in sub.data]
            if missing:
                raise ConfigError(f"{sub.path}: missing {', '.join(missing)}")
        return MappingProxyType({k: sub.num(k, lo=lo) for k in sub.data})

    def steps(self, key: str) -> tuple[tuple[float, float], ...]:
        """``[[from, points], …]`` with strictly ascending ``from``, the first 0."""
        value = self.raw(key)
        path = self.at(key)
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{path}: must be a non-empty list of [from, points]")
        out: list[tuple[float, float]] = []
        for i, pair in enumerate(value):
            if not isinstance(pair, list) or len(pair) != 2:
                raise ConfigError(f"{path}[{i}]: must be a pair [from, points]")
            start = _number(pair[0], f"{path}[{i}][0]", 0, None)
            points = _number(pair[1], f"{path}[{i}][1]", None, None)
            if out and start <= out[-1][0]:
                raise ConfigError(f"{path}[{i}]: bounds must be strictly ascending")
            out.append((start, points))
        if out[0][0] != 0:
            raise ConfigError(f"{path}[0]: the first bound must be 0")
        return tuple(out)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            where = f"{self.path}: " if self.path else ""
            raise ConfigError(f"{where}unknown setting(s) {', '.join(unknown)}")


def _number(value: Any, path: str, lo: float | None, hi: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{path}: must be finite, got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{path}: must be ≥ {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path}: must be ≤ {hi:g}, got {value!r}")
    return float(value)


def _known(names: Any, allowed: tuple[str, ...] | frozenset[str], path: str) -> None:
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ConfigError(f"{path}: unknown name(s) {', '.join(unknown)}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _tires(o: _Obj) -> TirePolicy:
    values = {name: o.num(name, lo=0) for name in _RULES_TIRE_FIELDS}
    p = TirePolicy(
        **values,
        imbalance_ratio=o.num("imbalance_ratio", lo=0.01, hi=0.9),
        imbalance_max_skew_s=o.num("imbalance_max_skew_s", lo=1),
    )
    o.done()
    return p


def _dynamics(o: _Obj) -> DynamicsPolicy:
    p = DynamicsPolicy(
        harsh_brake_mps2=o.table("harsh_brake_mps2", VEHICLE_CLASSES, complete=True, lo=0.5),
        harsh_accel_mps2=o.table("harsh_accel_mps2", VEHICLE_CLASSES, complete=True, lo=0.5),
        level2_ratio=o.num("level2_ratio", lo=1),
        min_dt_s=o.num("min_dt_s", lo=0.1),
        max_dt_s=o.num("max_dt_s", lo=1),
        max_plausible_mps2=o.num("max_plausible_mps2", lo=1),
        max_plausible_kmh=o.num("max_plausible_kmh", lo=50),
        jump_tolerance_m=o.num("jump_tolerance_m", lo=0),
    )
    o.done()
    _check(p.min_dt_s < p.max_dt_s, "dynamics: need min_dt_s < max_dt_s")
    worst = max(*p.harsh_brake_mps2.values(), *p.harsh_accel_mps2.values())
    _check(
        worst < p.max_plausible_mps2,
        "dynamics: every harsh threshold must be below max_plausible_mps2",
    )
    return p


def _overspeed(o: _Obj) -> OverspeedPolicy:
    p = OverspeedPolicy(
        road_limit_kmh=o.table("road_limit_kmh", VEHICLE_CLASSES, complete=True, lo=5),
        tolerance_kmh=o.num("tolerance_kmh", lo=0),
        min_duration_s=o.num("min_duration_s", lo=0),
        max_gap_s=o.num("max_gap_s", lo=1),
        level2_over_ratio=o.num("level2_over_ratio", lo=0),
    )
    o.done()
    return p


def _driving(o: _Obj) -> DrivingPolicy:
    p = DrivingPolicy(
        timezone=o.text("timezone"),
        night_start_h=o.num("night_start_h", lo=0, hi=24),
        night_end_h=o.num("night_end_h", lo=0, hi=24),
        moving_kmh=o.num("moving_kmh", lo=0),
        rest_s=o.num("rest_s", lo=60),
        continuous_limit_s=o.num("continuous_limit_s", lo=600),
        night_limit_s=o.num("night_limit_s", lo=600),
        night_limit_classes=o.names("night_limit_classes", VEHICLE_CLASSES),
        max_fix_gap_s=o.num("max_fix_gap_s", lo=1),
        history_s=o.num("history_s", lo=10, hi=86_400),
    )
    o.done()
    _tz(p.timezone)
    _check(p.night_start_h != p.night_end_h, "driving: night_start_h equals night_end_h")
    _check(p.max_fix_gap_s < p.rest_s, "driving: need max_fix_gap_s < rest_s")
    return p


def _silence(o: _Obj) -> SilencePolicy:
    p = SilencePolicy(
        silent_after_s=o.num("silent_after_s", lo=1),
        moving_kmh=o.num("moving_kmh", lo=0),
        severe_classes=o.names("severe_classes", VEHICLE_CLASSES),
    )
    o.done()
    return p


def _recurrence(o: _Obj) -> RecurrencePolicy:
    max_per_kind = o.num("max_per_kind", lo=2, hi=100_000)
    p = RecurrencePolicy(
        window_s=o.num("window_s", lo=1),
        merge_s=o.num("merge_s", lo=0),
        retention_s=o.num("retention_s", lo=1, hi=86_400),
        max_per_kind=int(max_per_kind),
    )
    o.done()
    _check(p.window_s <= p.retention_s, "recurrence: need window_s <= retention_s")
    _check(p.merge_s < p.window_s, "recurrence: need merge_s < window_s")
    _check(max_per_kind == p.max_per_kind, "recurrence.max_per_kind: must be a whole number")
    return p


def _severity(o: _Obj) -> SeverityPolicy:
    base = o.table("base_points", SEVERITIES, complete=True)
    zone_classes_obj = o.obj("zone_classes")
    _known(zone_classes_obj.data, ZONE_KINDS, zone_classes_obj.path)
    zone_classes = {
        z: zone_classes_obj.names(z, VEHICLE_CLASSES) for z in list(zone_classes_obj.data)
    }
    zone_classes_obj.done()
    recurrence = o.raw("recurrence_points")
    if not isinstance(recurrence, list) or not recurrence:
        raise ConfigError("severity.recurrence_points: must be a non-empty list of points")
    p = SeverityPolicy(
        events=_events(o.obj("events")),
        always_severe=o.names("always_severe", tuple(GRADED_KINDS)),
        base_points=base,
        moderate_at=o.num("moderate_at"),
        severe_at=o.num("severe_at"),
        speed_points=o.steps("speed_points"),
        over_limit_points=o.num("over_limit_points"),
        class_points=o.table("class_points", VEHICLE_CLASSES, complete=False),
        load_points=o.table("load_points", LOADS, complete=False),
        night_points=o.num("night_points"),
        zone_points=o.table("zone_points", ZONE_KINDS, complete=False),
        zone_classes=MappingProxyType(zone_classes),
        recurrence_points=tuple(
            _number(v, f"severity.recurrence_points[{i}]", None, None)
            for i, v in enumerate(recurrence)
        ),
        driving_points=o.steps("driving_points"),
    )
    o.done()
    _check(p.moderate_at < p.severe_at, "severity: need moderate_at < severe_at")
    g, m, s = (p.base_points[k] for k in SEVERITIES)
    # Each base severity must grade as itself before context: otherwise the table lies.
    _check(
        g < p.moderate_at <= m < p.severe_at <= s,
        "severity.base_points: need general < moderate_at <= moderate < severe_at <= severe",
    )
    return p


def _events(o: _Obj) -> Mapping[str, tuple[str, str]]:
    _known(o.data, tuple(GRADED_KINDS), o.path)
    missing = sorted(GRADED_KINDS - set(o.data))
    if missing:
        raise ConfigError(f"{o.path}: no severity for kind(s) {', '.join(missing)}")
    out: dict[str, tuple[str, str]] = {}
    for kind in sorted(o.data):
        spec = o.raw(kind)
        pair = [spec, spec] if isinstance(spec, str) else spec
        path = o.at(kind)
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConfigError(f"{path}: must be a severity or [level1, level2]")
        for value in pair:
            if value not in SEVERITIES:
                raise ConfigError(f"{path}: {value!r} is not a severity (one of {SEVERITIES})")
        if _SEV_ORDER[pair[1]] < _SEV_ORDER[pair[0]]:
            raise ConfigError(f"{path}: level 2 {pair[1]!r} is less severe than {pair[0]!r}")
        out[kind] = (pair[0], pair[1])
    return MappingProxyType(out)
