"""Risk scores: weighted alarms per 100 km and per driving hour (docs/insurer-api.md).

    points(kind)  = Σ_severity  alarms(kind, severity) × weight(kind) × factor(severity)
    per_100km     = Σ_kind points(kind) / km × 100
    per_hour      = Σ_kind points(kind) / driving hours

No score below the minimum exposure (both ``min_km`` and ``min_hours``): a few alarms in a
short sample would rank a vehicle by chance. Pure: exposure and counts come from
``store/exposure.py``; the weights from ``risk_weights.json`` or
``TELEMATICS_RISK_WEIGHTS_FILE``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from telematics.config import read_json_object
from telematics.errors import ConfigError
from telematics.protocol.messages import SEVERITIES

WEIGHTS_ENV = "TELEMATICS_RISK_WEIGHTS_FILE"


@dataclass(frozen=True)
class RiskWeights:
    version: str
    default_weight: float
    weights: Mapping[str, float]
    severity_factor: Mapping[str, float]
    min_km: float
    min_hours: float
    segment_gap_s: float  # a longer gap between two fixes is not driven distance
    driving_min_kmh: float  # slower than this is not driving time

    def weight(self, kind: str) -> float:
        return self.weights.get(kind, self.default_weight)


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}.{key}: must be a number ≥ 0")
    return float(value)


def parse_weights(data: Mapping[str, Any], where: str = "risk weights") -> RiskWeights:
    extra = sorted(
        set(data)
        - {"version", "default_weight", "weights", "severity_factor", "min_exposure"}
        - {"segment_gap_s", "driving_min_kmh"}
    )
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}")
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise ConfigError(f"{where}.version: must be a non-empty string")
    kinds = data.get("weights", {})
    factors = data.get("severity_factor", {})
    exposure = data.get("min_exposure", {})
    if not all(isinstance(x, Mapping) for x in (kinds, factors, exposure)):
        raise ConfigError(f"{where}: weights, severity_factor, min_exposure must be objects")
    if set(factors) != set(SEVERITIES):
        raise ConfigError(f"{where}.severity_factor: one number for each of {SEVERITIES}")
    return RiskWeights(
        version=version,
        default_weight=_number(data, "default_weight", where),
        weights={k: _number(kinds, k, f"{where}.weights") for k in kinds},
        severity_factor={s: _number(factors, s, f"{where}.severity_factor") for s in SEVERITIES},
        min_km=_number(exposure, "km", f"{where}.min_exposure"),
        min_hours=_number(exposure, "hours", f"{where}.min_exposure"),
        segment_gap_s=_number(data, "segment_gap_s", where),
        driving_min_kmh=_number(data, "driving_min_kmh", where),
    )


def load_weights(path: str | None = None) -> RiskWeights:
    """``path``, else ``$TELEMATICS_RISK_WEIGHTS_FILE``, else the packaged weights."""
    path = path or os.environ.get(WEIGHTS_ENV) or None
    if path is None:
        return _packaged()
    return parse_weights(read_json_object(path, "risk weights"), f"risk weights {path}")


@cache
def _packaged() -> RiskWeights:
    text = resources.files("telematics.insurer").joinpath("risk_weights.json").read_text("utf-8")
    return parse_weights(json.loads(text))


@dataclass(frozen=True, slots=True)
class Exposure:
    km: float
    hours: float


@dataclass(frozen=True, slots=True)
class AlarmCount:
    kind: str
    severity: str
    count: int


def score(exposure: Exposure, counts: Iterable[AlarmCount], w: RiskWeights) -> dict[str, Any]:
    """One subject's score with its breakdown by behaviour, as JSON-ready data."""
    by_kind: dict[str, dict[str, int]] = {}
    for c in counts:
        by_kind.setdefault(c.kind, dict.fromkeys(SEVERITIES, 0))[c.severity] += c.count
    rows: list[dict[str, Any]] = []
    for kind, split in sorted(by_kind.items()):
        points = sum(n * w.weight(kind) * w.severity_factor[s] for s, n in split.items())
        rows.append(
            {
                "kind": kind,
                "count": sum(split.values()),
                "by_severity": split,
                "weight": w.weight(kind),
                "points": round(points, 4),
            }
        )
    total = sum(r["points"] for r in rows)
    enough = exposure.km >= w.min_km and exposure.hours >= w.min_hours
    for r in rows:
        r["impact_per_100km"] = round(r["points"] / exposure.km * 100, 4) if enough else None
        r["impact_per_hour"] = round(r["points"] / exposure.hours, 4) if enough else None
        r["share"] = round(r["points"] / total, 4) if total else 0.0
    rows.sort(key=lambda r: (-r["points"], r["kind"]))
    return {
        "exposure": {"km": round(exposure.km, 3), "driving_hours": round(exposure.hours, 3)},
        "scored": enough,
        "reason": None
        if enough
        else f"insufficient exposure: needs ≥ {w.min_km:g} km and ≥ {w.min_hours:g} h",
        "per_100km": round(total / exposure.km * 100, 4) if enough else None,
        "per_hour": round(total / exposure.hours, 4) if enough else None,
        "points": round(total, 4),
        "breakdown": rows,
        "weights_version": w.version,
    }
