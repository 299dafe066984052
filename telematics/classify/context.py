"""Context-aware severity: one alarm plus the vehicle's state → general / moderate / severe.

A points model, every number from the :class:`RiskPolicy`: the kind's base severity by
the unit's level gives base points; speed band, vehicle class, load, night, the worst
zone inside, recurrence of the same kind in the last 30 minutes and continuous driving
add (or, at a crawl or in a depot, remove) points; thresholds map the score back to a
severity. Crash, rollover and panic are severe whatever the context; a severity a
detector measured itself (tires) is a floor.

The grader sees only a :class:`GradingInput`, a flat snapshot of the state, so a trained
model can replace :class:`RulesGrader` behind the same :class:`Grader` protocol and the
same snapshot is its feature row.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from telematics.classify.alarms import SEVERITY_RANK
from telematics.classify.risk_policy import RiskPolicy, load_policy
from telematics.errors import UsageError

if TYPE_CHECKING:
    from telematics.state.vehicle import VehicleState

__all__ = [
    "Graded",
    "Grader",
    "GradingInput",
    "RiskPolicy",
    "RulesGrader",
    "floored",
    "grade",
    "load_policy",
]

_SPEED_KINDS = frozenset({"overspeed", "road_sign_overspeed"})
_ZONE_LABELS = {
    "school": "school zone",
    "tunnel": "tunnel",
    "flood_prone": "flood-prone area",
    "hazmat_restricted": "hazmat-restricted zone",
    "depot": "depot",
    "speed_limit": "speed-limited road",
}


@dataclass(frozen=True, slots=True)
class GradingInput:
    """What grading may know about one alarm: the alarm and a snapshot of its vehicle."""

    kind: str
    level: int | None
    ts: datetime
    speed_kmh: float
    speed_limit_kmh: float | None  # in force where it happened: the zone's or the road's
    vehicle_class: str
    load: str  # empty / half / full / unknown
    night: bool
    zone_kinds: frozenset[str]  # kinds of the zones the vehicle is inside
    recurrence: int  # occurrences of this kind in the recurrence window, this one included
    continuous_driving_s: float
    driving_today_s: float
    derived: bool = False
    base: str | None = None  # a detector's own severity (tires), else the policy's table
    detail: str | None = None  # what was detected, e.g. "tire 2LO 598 kPa …"
    # Context for a trained model (ml/features.py); the rules do not read these.
    recent_alarms: int = 0  # occurrences of any kind in the recurrence window, this one included
    tire_conditions: int = 0  # tire conditions active on the vehicle (low, hot, leaking …)
    driver_alarms: int = 0  # alarms since the current driver took this vehicle over
    driver_hours: float = 0.0  # their driving hours since then: history = alarms / hours


@dataclass(frozen=True, slots=True)
class Graded:
    severity: str
    reason: str
    score: float
    # Only from a model grader: see AlarmCandidate.
    probability: float | None = None
    model_version: str | None = None
    factors: tuple[str, ...] = ()


class Grader(Protocol):
    """Grades a batch at once (a model predicts faster on a batch than row by row)."""

    @property
    def version(self) -> str: ...

    def grade_many(self, inputs: Sequence[GradingInput]) -> list[Graded]: ...


def floored(severity: str, x: GradingInput, always_severe: frozenset[str]) -> str:
    """The floors every grader keeps: crash, rollover and panic are severe whatever the
    context; a detector's measured severity (a tire at 100 °C) may be raised by context,
    but a crawl or a depot must not talk a measured condition down."""
    if x.kind in always_severe:
        return "severe"
    if x.base is not None and SEVERITY_RANK[severity] < SEVERITY_RANK[x.base]:
        return x.base
    return severity


class RulesGrader:
    """The default grader: the policy's points model."""

    def __init__(self, policy: RiskPolicy) -> None:
        self.policy = policy
        sp = policy.severity
        self._speed_from = [b for b, _ in sp.speed_points]
        self._driving_from = [b for b, _ in sp.driving_points]
        self._window_min = round(policy.recurrence.window_s / 60)

    @property
    def version(self) -> str:
        return self.policy.version

    def grade_many(self, inputs: Sequence[GradingInput]) -> list[Graded]:
        return [self.grade_one(x) for x in inputs]

    def grade_one(self, x: GradingInput) -> Graded:
        sp = self.policy.severity
        rule = sp.events.get(x.kind)
        if rule is None:  # the decoder rejects unknown kinds; reaching here is a bug
            raise UsageError(f"policy {self.version}: no severity for kind {x.kind!r}")
        base = x.base or (rule[1] if x.level == 2 else rule[0])
        if base not in sp.base_points:
            raise UsageError(f"base severity {base!r} is not a severity")
        factors = self._factors(x)
        score = sp.base_points[base] + sum(points for points, _ in factors)
        if score >= sp.severe_at:
            severity = "severe"
        elif score >= sp.moderate_at:
            severity = "moderate"
        else:
            severity = "general"
        severity = floored(severity, x, sp.always_severe)
        return Graded(severity, self._reason(x, factors), score)

    def _factors(self, x: GradingInput) -> list[tuple[float, str]]:
        """(points, label) of each context factor; the label is shown when points > 0."""
        sp = self.policy.severity
        out: list[tuple[float, str]] = []
        if x.recurrence >= 2:
            i = min(x.recurrence, len(sp.recurrence_points)) - 1
            out.append(
                (sp.recurrence_points[i], f"{_ordinal(x.recurrence)} in {self._window_min} min")
            )
        out.append((sp.speed_points[bisect.bisect_right(self._speed_from, x.speed_kmh) - 1][1], ""))
        limit = x.speed_limit_kmh
        # An overspeed alarm is about exactly this: not counted twice.
        if limit is not None and x.kind not in _SPEED_KINDS:
            if x.speed_kmh > limit + self.policy.overspeed.tolerance_kmh:
                out.append((sp.over_limit_points, f"over the {limit:.0f} km/h limit"))
        out.append((sp.class_points.get(x.vehicle_class, 0.0), x.vehicle_class))
        out.append((sp.load_points.get(x.load, 0.0), f"{x.load} load"))
        if x.night:
            out.append((sp.night_points, "night"))
        zone = self._worst_zone(x)
        if zone is not None:
            out.append(zone)
        # driving_time is itself about the hours at the wheel: not counted twice.
        if x.kind != "driving_time":
            i = bisect.bisect_right(self._driving_from, x.continuous_driving_s) - 1
            hours = x.continuous_driving_s / 3600
            out.append((sp.driving_points[i][1], f"{hours:.1f} h without a break"))
        return out

    def _worst_zone(self, x: GradingInput) -> tuple[float, str] | None:
        sp = self.policy.severity
        best: tuple[float, str] | None = None
        for kind in sorted(x.zone_kinds):
            only = sp.zone_classes.get(kind)
            if only is not None and x.vehicle_class not in only:
                continue
            points = sp.zone_points.get(kind, 0.0)
            if best is None or points > best[0]:
                best = (points, _ZONE_LABELS.get(kind, kind.replace("_", " ")))
        return best

    def _reason(self, x: GradingInput, factors: list[tuple[float, str]]) -> str:
        if x.detail is not None:
            head = x.detail
        else:
            head = x.kind.replace("_", " ")
            if x.level is not None:
                head = f"{head} L{x.level}"
        if "km/h" not in head:
            head = f"{head} at {x.speed_kmh:.0f} km/h"
        # Only what made it worse, and nothing the detail already says.
        said = head.lower()
        parts = [label for points, label in factors if points > 0 and label.lower() not in said]
        return ", ".join([head, *parts])


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def grade(
    kind: str,
    level: int | None,
    state: VehicleState,
    ts: datetime,
    speed_kmh: float,
    base: str | None = None,
    detail: str | None = None,
) -> tuple[str, str]:
    """Severity and reason of one alarm on ``state``'s vehicle, by the state's policy.

    Reads the state only; recurrence counts what the state has already recorded.
    """
    x = state.grading_input(kind, level, ts, speed_kmh, base=base, detail=detail)
    graded = RulesGrader(state.policy).grade_one(x)
    return graded.severity, graded.reason
