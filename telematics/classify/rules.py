"""One versioned rules table: thresholds and the severity of every device event kind.

Pure: no I/O except ``load_rules`` reading its JSON file. ``grade_event`` is the seam a
later context-aware risk engine replaces (same signature, ``vehicle`` already passed in).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from telematics.classify.alarms import SEVERITY_RANK, AlarmCandidate
from telematics.errors import ConfigError, UsageError
from telematics.fleet import Vehicle
from telematics.protocol.messages import (
    ADAS_KINDS,
    DSM_KINDS,
    EVENT_KINDS,
    SEVERITIES,
    TPMS_KINDS,
    DeviceEvent,
)

_TIRE_POS = re.compile(r"[1-9][0-9]?[LR][OI]?\Z")  # same shape the decoder accepts in telemetry
_GRADED_KINDS = frozenset(DSM_KINDS + ADAS_KINDS)  # kinds the 苏标 graded-speed rule applies to


@dataclass(frozen=True)
class EventRule:
    """Severity of one event kind by the unit's own level (``level1`` also covers no level)."""

    level1: str
    level2: str

    def __post_init__(self) -> None:
        for name in ("level1", "level2"):
            value = getattr(self, name)
            if value not in SEVERITIES:
                raise ConfigError(f"{name}: {value!r} is not a severity (one of {SEVERITIES})")
        # 苏标 level 2 is the worse level; an inverted row is a typo, not a policy.
        if SEVERITY_RANK[self.level2] < SEVERITY_RANK[self.level1]:
            raise ConfigError(f"level2 {self.level2!r} is less severe than level1 {self.level1!r}")


def _same(severity: str) -> EventRule:
    return EventRule(severity, severity)


_G, _M, _S = "general", "moderate", "severe"

#: Default table. Aim: the large majority general, severe very rare (the reference
#: insurer's split is 85 % general / 14.5 % moderate / 0.09 % severe).
DEFAULT_EVENT_RULES: Mapping[str, EventRule] = MappingProxyType(
    {
        # always severe: a crash already happened or someone asked for help
        "collision": _same(_S),
        "rollover": _same(_S),
        "panic_button": _same(_S),
        # driver state
        "fatigue": _same(_M),
        "phone_call": _same(_M),
        "driver_absent": _same(_M),
        "distraction": EventRule(_G, _M),
        "smoking": EventRule(_G, _M),
        "yawning": _same(_G),
        "seatbelt_off": _same(_G),
        "camera_blocked": _same(_G),
        # driver assistance
        "forward_collision": _same(_M),
        "pedestrian_collision": _same(_M),
        "lane_departure": EventRule(_G, _M),
        "headway_too_close": EventRule(_G, _M),
        "frequent_lane_change": _same(_G),
        "road_sign_overspeed": _same(_G),
        "obstacle": _same(_G),
        # blind spot
        "blind_spot_left": _same(_G),
        "blind_spot_right": _same(_G),
        "blind_spot_rear": _same(_G),
        # vehicle dynamics
        "harsh_brake": _same(_G),
        "harsh_accel": _same(_G),
        "harsh_turn": _same(_G),
        "overspeed": _same(_G),
        # tires raised by the unit itself
        "tire_temp_high": _same(_M),
        "tire_fast_leak": _same(_M),  # severe at speed, see grade_event
        "tire_pressure_high": _same(_G),
        "tire_pressure_low": _same(_G),
        "tire_sensor_fault": _same(_G),
    }
)


@dataclass(frozen=True)
class Rules:
    """Thresholds and event severities; every instance is validated on construction."""

    version: str = "2026-11-v1"
    graded_speed_kmh: float = 50.0  # 苏标 graded-speed default: L2 DSM/ADAS at/above → ≥ moderate
    low_pressure_ratio: float = 0.786  # 110/140 psi of the 苏标 default → general
    low_pressure_moderate_ratio: float = 0.70
    high_pressure_ratio: float = 1.35  # 189/140 psi
    high_temp_c: float = 80.0  # moderate
    severe_temp_c: float = 100.0  # severe
    slow_leak_kpa_per_min: float = 1.0  # cold-compensated slope over leak_window_s → general
    leak_window_s: float = 600.0
    slow_leak_min_span_s: float = 300.0
    fast_leak_kpa_per_min: float = 20.0  # OEM TPMS leak warning; moderate, severe at speed
    fast_leak_window_s: float = 60.0
    fast_leak_severe_speed_kmh: float = 60.0
    clear_margin: float = 0.03  # fraction of a threshold a value must be back inside to clear
    cooldown_s: float = 300.0  # repeats of the same alarm key within this are grouped
    events: Mapping[str, EventRule] = field(default_factory=lambda: DEFAULT_EVENT_RULES)

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version:
            raise ConfigError("version: must be a non-empty string")
        for f in fields(self):
            if f.name in ("version", "events"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{f.name}: must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{f.name}: must be a finite number ≥ 0, got {value!r}")
        self._check_order()
        self._check_events()

    def _check_order(self) -> None:
        checks = (
            (
                0 < self.low_pressure_moderate_ratio < self.low_pressure_ratio < 1,
                "need 0 < low_pressure_moderate_ratio < low_pressure_ratio < 1",
            ),
            (self.high_pressure_ratio > 1, "high_pressure_ratio: must be > 1"),
            (self.high_temp_c < self.severe_temp_c, "need high_temp_c < severe_temp_c"),
            (self.slow_leak_kpa_per_min > 0, "slow_leak_kpa_per_min: must be > 0"),
            (
                self.fast_leak_kpa_per_min > self.slow_leak_kpa_per_min,
                "need fast_leak_kpa_per_min > slow_leak_kpa_per_min",
            ),
            (
                0 < self.slow_leak_min_span_s <= self.leak_window_s,
                "need 0 < slow_leak_min_span_s <= leak_window_s",
            ),
            (
                10 <= self.fast_leak_window_s <= self.leak_window_s,
                "need 10 <= fast_leak_window_s <= leak_window_s",
            ),
            (self.clear_margin < 0.5, "clear_margin: must be < 0.5"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def _check_events(self) -> None:
        if not isinstance(self.events, Mapping):
            raise ConfigError("events: must be a mapping of kind → EventRule")
        unknown = sorted(set(self.events) - EVENT_KINDS)
        if unknown:
            raise ConfigError(f"events: unknown kind(s) {', '.join(unknown)}")
        missing = sorted(EVENT_KINDS - set(self.events))
        if missing:
            raise ConfigError(f"events: no rule for kind(s) {', '.join(missing)}")
        for kind, rule in self.events.items():
            if not isinstance(rule, EventRule):
                raise ConfigError(f"events.{kind}: must be an EventRule")
        # Frozen rules must not change under a caller that kept the dict.
        object.__setattr__(self, "events", MappingProxyType(dict(self.events)))


_NUMBER_FIELDS = frozenset(f.name for f in fields(Rules)) - {"version", "events"}


def load_rules(path: str | None) -> Rules:
    """Defaults, or a JSON object overriding any field; ``events`` is merged per kind.

    An event override is either a severity string (both levels) or an object with
    ``level1`` and/or ``level2``; a missing level keeps the default's.
    """
    if path is None:
        return Rules()
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"rules file {path}: cannot read ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"rules file {path}: not valid JSON ({exc})") from exc
    try:
        return _rules_from(data)
    except ConfigError as exc:
        raise ConfigError(f"rules file {path}: {exc}") from exc


def _rules_from(data: Any) -> Rules:
    if not isinstance(data, dict):
        raise ConfigError("top level must be a JSON object")
    known = _NUMBER_FIELDS | {"version", "events"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    overrides: dict[str, Any] = {k: v for k, v in data.items() if k != "events"}
    for name in _NUMBER_FIELDS & set(overrides):
        value = overrides[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: must be a number, got {value!r}")
        overrides[name] = float(value)
    base = Rules()
    if "events" in data:
        overrides["events"] = _merge_events(base.events, data["events"])
    return replace(base, **overrides)


def _merge_events(defaults: Mapping[str, EventRule], raw: Any) -> dict[str, EventRule]:
    if not isinstance(raw, dict):
        raise ConfigError("events: must be an object of kind → rule")
    merged = dict(defaults)
    for kind, spec in raw.items():
        if kind not in EVENT_KINDS:
            raise ConfigError(f"events: unknown kind {kind!r}")
        base = defaults[kind]
        if isinstance(spec, str):
            spec = {"level1": spec, "level2": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"events.{kind}: must be a severity or an object")
        extra = sorted(set(spec) - {"level1", "level2"})
        if extra:
            raise ConfigError(f"events.{kind}: unknown key(s) {', '.join(extra)}")
        try:
            merged[kind] = EventRule(
                level1=spec.get("level1", base.level1), level2=spec.get("level2", base.level2)
            )
        except ConfigError as exc:
            raise ConfigError(f"events.{kind}: {exc}") from exc
    return merged


def _at_least(severity: str, floor: str) -> str:
    return severity if SEVERITY_RANK[severity] >= SEVERITY_RANK[floor] else floor


def event_key(event: DeviceEvent) -> tuple[str, str | None]:
    """Alarm key and tire position of a device event (TPMS kinds are per tire)."""
    pos = (event.attrs or {}).get("pos")
    if event.kind in TPMS_KINDS and isinstance(pos, str) and _TIRE_POS.match(pos):
        return f"{event.kind}:{pos}", pos
    return event.kind, None


def grade_event(event: DeviceEvent, vehicle: Vehicle, rules: Rules) -> AlarmCandidate:
    """Severity and reason of one device event. ``vehicle`` is unused in this version."""
    rule = rules.events.get(event.kind)
    if rule is None:  # the decoder rejects unknown kinds; reaching here is a bug
        raise UsageError(f"rules {rules.version}: no rule for event kind {event.kind!r}")
    severity = rule.level2 if event.level == 2 else rule.level1
    if event.kind in _GRADED_KINDS and event.level == 2:
        if event.speed_kmh >= rules.graded_speed_kmh:
            severity = _at_least(severity, "moderate")
    if event.kind == "tire_fast_leak" and event.speed_kmh >= rules.fast_leak_severe_speed_kmh:
        severity = "severe"  # a tire deflating fast at highway speed is a blow-out risk
    key, pos = event_key(event)
    return AlarmCandidate(
        vehicle_id=vehicle.id,
        kind=event.kind,
        key=key,
        severity=severity,
        reason=_event_reason(event, pos),
        seq=event.seq,
        ts=event.ts,
        derived=False,
        level=event.level,
        tire_pos=pos,
        lat=event.lat,
        lon=event.lon,
        speed_kmh=event.speed_kmh,
    )


def _event_reason(event: DeviceEvent, pos: str | None) -> str:
    what = event.kind.replace("_", " ")
    if pos is not None:
        what = f"{what} on {pos}"
    speed = f"at {event.speed_kmh:.0f} km/h"
    if event.level is None:
        return f"{what} reported by unit {speed}"
    return f"{what} L{event.level} {speed}"
