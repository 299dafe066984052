"""What the classify stage produces: an alarm candidate with its severity and reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: Ordered from least to most severe; compare with SEVERITY_RANK.
SEVERITY_RANK: dict[str, int] = {"general": 0, "moderate": 1, "severe": 2}


@dataclass(frozen=True, slots=True)
class AlarmCandidate:
    """One graded occurrence of a risky behaviour or condition on one vehicle.

    ``kind`` is an event kind of the device protocol (or ``tire_slow_leak``);
    ``key`` identifies "the same alarm" for grouping, e.g. ``"fatigue"`` or
    ``"tire_pressure_low:2LO"``.
    """

    vehicle_id: str
    kind: str
    key: str
    severity: str
    reason: str
    seq: int  # the item that raised it (telemetry seq for derived alarms)
    ts: datetime
    derived: bool
    level: int | None
    tire_pos: str | None
    lat: float
    lon: float
    speed_kmh: float
    # Set when a trained model graded it (ml/): P(collision soon), which model, and the
    # factors that raised the probability most, in words.
    probability: float | None = None
    model_version: str | None = None
    factors: tuple[str, ...] = ()
