"""One feature function for training and serving: grading snapshots → a numeric matrix.

Two steps, and both paths take both: :func:`columns_from_inputs` reads
:class:`GradingInput` objects (what the server grades) into :class:`Columns`, one numpy
array per field; :func:`matrix_from_columns` computes every feature from the columns.
The offline generator (``ml/synth.py``) produces :class:`Columns` directly, a million rows
in a second; a test checks that going through ``GradingInput`` gives the very same
matrix, so there is no train/serve skew to drift into.

Categorical features (kind, vehicle class, load) are integer codes over fixed
vocabularies (``NaN`` for a value the vocabulary lacks): the gradient-boosted trees split
on them natively. A model records :data:`FEATURE_NAMES` and refuses to load against a
different list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache

import numpy as np
from numpy.typing import NDArray

from telematics.classify.context import GradingInput
from telematics.classify.risk_policy import GRADED_KINDS, LOADS, load_policy
from telematics.fleet import VEHICLE_CLASSES
from telematics.geo.context import ZONE_KINDS

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: The kind vocabulary, by code. Written out, not derived from ``GRADED_KINDS``: a new
#: kind sorted in among them would shift the codes of the kinds after it, and every model
#: already registered would read (say) yawning as the new kind. Append only, then retrain.
KINDS: tuple[str, ...] = (
    *("blind_spot_left", "blind_spot_rear", "blind_spot_right", "camera_blocked"),
    *("collision", "distraction", "driver_absent", "driving_time", "fatigue"),
    *("forward_collision", "frequent_lane_change", "harsh_accel", "harsh_brake"),
    *("harsh_turn", "hazmat_restricted_zone", "headway_too_close", "lane_departure"),
    *("obstacle", "overspeed", "panic_button", "pedestrian_collision", "phone_call"),
    *("road_sign_overspeed", "rollover", "seatbelt_off", "smoking", "tire_fast_leak"),
    *("tire_imbalance", "tire_pressure_high", "tire_pressure_low", "tire_sensor_fault"),
    *("tire_slow_leak", "tire_temp_high", "yawning"),
)
#: Kinds no model has learnt (not in the vocabulary): the rules grade them (ml/grader.py).
RULES_ONLY_KINDS: frozenset[str] = GRADED_KINDS - frozenset(KINDS)
BASES: tuple[str | None, ...] = (None, "general", "moderate", "severe")
_KIND = {k: i for i, k in enumerate(KINDS)}
_CLASS = {c: i for i, c in enumerate(VEHICLE_CLASSES)}
_LOAD = {x: i for i, x in enumerate(LOADS)}
_BASE = {b: i for i, b in enumerate(BASES)}
#: The driver's alarm rate is shrunk toward a typical driver's over this many hours, so a
#: driver ten minutes into a shift with one alarm does not read as 6 alarms an hour.
PRIOR_RATE_PER_H = 8.0
PRIOR_HOURS = 0.5

FEATURE_NAMES: tuple[str, ...] = (
    "kind",
    "level",
    "speed_kmh",
    "over_limit_kmh",
    "vehicle_class",
    "load",
    "night",
    "hour_local",
    *(f"zone_{z}" for z in ZONE_KINDS),
    "recurrence",
    "recent_alarms",
    "continuous_driving_h",
    "driving_today_h",
    "derived",
    "base",
    "tire_conditions",
    "driver_alarms_per_h",
    "driver_hours",
)
CATEGORICAL: tuple[str, ...] = ("kind", "vehicle_class", "load")
_F = {name: i for i, name in enumerate(FEATURE_NAMES)}

#: Feature groups for explanations, each said in words by :func:`describe_group`.
GROUPS: dict[str, tuple[int, ...]] = {
    "kind": (_F["kind"], _F["level"], _F["derived"], _F["base"]),
    "speed": (_F["speed_kmh"], _F["over_limit_kmh"]),
    "vehicle": (_F["vehicle_class"], _F["load"]),
    "time": (_F["night"], _F["hour_local"]),
    "zone": tuple(_F[f"zone_{z}"] for z in ZONE_KINDS),
    "recurrence": (_F["recurrence"], _F["recent_alarms"]),
    "driving": (_F["continuous_driving_h"], _F["driving_today_h"]),
    "tires": (_F["tire_conditions"],),
    "driver": (_F["driver_alarms_per_h"], _F["driver_hours"]),
}


@dataclass(slots=True)
class Columns:
    """Grading snapshots column by column (the fields of :class:`GradingInput`).

    ``kind``/``vehicle_class``/``load``/``base`` are codes into :data:`KINDS`,
    ``VEHICLE_CLASSES``, ``LOADS``, :data:`BASES` (−1: not in the vocabulary); ``level``
    0 means none; ``ts`` is epoch seconds; ``speed_limit_kmh`` NaN means none; ``zones`` is
    a bit set over ``ZONE_KINDS``.
    """

    kind: I64
    level: I64
    ts: F64
    speed_kmh: F64
    speed_limit_kmh: F64
    vehicle_class: I64
    load: I64
    night: NDArray[np.bool_]
    zones: I64
    recurrence: I64
    continuous_driving_s: F64
    driving_today_s: F64
    derived: NDArray[np.bool_]
    base: I64
    recent_alarms: I64
    tire_conditions: I64
    driver_alarms: I64
    driver_hours: F64

    def __len__(self) -> int:
        return len(self.kind)

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_] | slice) -> Columns:
        return Columns(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def concat(parts: Sequence[Columns]) -> Columns:
        names = [f.name for f in fields(Columns)]
        return Columns(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    def zone_kinds(self, i: int) -> frozenset[str]:
        bits = int(self.zones[i])
        return frozenset(z for j, z in enumerate(ZONE_KINDS) if bits >> j & 1)

    def to_inputs(self) -> list[GradingInput]:
        """The rows as the server would have graded them (for the rules, and tests)."""
        out = []
        for i in range(len(self)):
            level = int(self.level[i])
            limit = float(self.speed_limit_kmh[i])
            out.append(
                GradingInput(
                    kind=KINDS[self.kind[i]],
                    level=level or None,
                    ts=datetime.fromtimestamp(float(self.ts[i]), UTC),
                    speed_kmh=float(self.speed_kmh[i]),
                    speed_limit_kmh=None if np.isnan(limit) else limit,
                    vehicle_class=VEHICLE_CLASSES[self.vehicle_class[i]],
                    load=LOADS[self.load[i]],
                    night=bool(self.night[i]),
                    zone_kinds=self.zone_kinds(i),
                    recurrence=int(self.recurrence[i]),
                    continuous_driving_s=float(self.continuous_driving_s[i]),
                    driving_today_s=float(self.driving_today_s[i]),
                    derived=bool(self.derived[i]),
                    base=BASES[self.base[i]],
                    recent_alarms=int(self.recent_alarms[i]),
                    tire_conditions=int(self.tire_conditions[i]),
                    driver_alarms=int(self.driver_alarms[i]),
                    driver_hours=float(self.driver_hours[i]),
                )
            )
        return out


_ZONE_BIT = {z: 1 << j for j, z in enumerate(ZONE_KINDS)}


def columns_from_inputs(inputs: Sequence[GradingInput]) -> Columns:
    """Read snapshots into columns (one pass; the only per-row Python in serving)."""
    n = len(inputs)
    kind = np.empty(n, np.int64)
    level = np.empty(n, np.int64)
    ts = np.empty(n, np.float64)
    speed = np.empty(n, np.float64)
    limit = np.empty(n, np.float64)
    cls = np.empty(n, np.int64)
    load = np.empty(n, np.int64)
    night = np.empty(n, np.bool_)
    zones = np.empty(n, np.int64)
    rec = np.empty(n, np.int64)
    cont = np.empty(n, np.float64)
    today = np.empty(n, np.float64)
    derived = np.empty(n, np.bool_)
    base = np.empty(n, np.int64)
    recent = np.empty(n, np.int64)
    tires = np.empty(n, np.int64)
    d_alarms = np.empty(n, np.int64)
    d_hours = np.empty(n, np.float64)
    for i, x in enumerate(inputs):
        kind[i] = _KIND.get(x.kind, -1)
        level[i] = x.level or 0
        ts[i] = x.ts.timestamp()
        speed[i] = x.speed_kmh
        limit[i] = np.nan if x.speed_limit_kmh is None else x.speed_limit_kmh
        cls[i] = _CLASS.get(x.vehicle_class, -1)
        load[i] = _LOAD.get(x.load, -1)
        night[i] = x.night
        bits = 0
        for z in x.zone_kinds:
            bits |= _ZONE_BIT.get(z, 0)
        zones[i] = bits
        rec[i] = x.recurrence
        cont[i] = x.continuous_driving_s
        today[i] = x.driving_today_s
        derived[i] = x.derived
        base[i] = _BASE.get(x.base, -1)
        recent[i] = x.recent_alarms
        tires[i] = x.tire_conditions
        d_alarms[i] = x.driver_alarms
        d_hours[i] = x.driver_hours
    return Columns(kind, level, ts, speed, limit, cls, load, night, zones, rec, cont, today,
                   derived, base, recent, tires, d_alarms, d_hours)  # fmt: skip


@cache
def local_utc_offset_h() -> float:
    """The fleet's local UTC offset (the risk policy's time zone) for the hour feature.

    One offset for all rows: exact for Asia/Shanghai (no DST); in a DST zone the hour is
    off by one for part of the year, which ``night`` (computed per row) does not suffer.
    """
    tz = load_policy().driving.tz
    offset = datetime(2026, 1, 1, tzinfo=UTC).astimezone(tz).utcoffset()
    return 0.0 if offset is None else offset.total_seconds() / 3600.0


def _code(values: I64) -> F64:
    out = values.astype(np.float64)
    out[values < 0] = np.nan  # not in the vocabulary: the trees treat it as missing
    return out


def matrix_from_columns(c: Columns) -> F64:
    """The feature matrix, one row per snapshot, columns in :data:`FEATURE_NAMES` order."""
    n = len(c)
    x = np.empty((n, len(FEATURE_NAMES)), np.float64)
    x[:, _F["kind"]] = _code(c.kind)
    x[:, _F["level"]] = c.level
    x[:, _F["speed_kmh"]] = c.speed_kmh
    x[:, _F["over_limit_kmh"]] = c.speed_kmh - c.speed_limit_kmh
    x[:, _F["vehicle_class"]] = _code(c.vehicle_class)
    x[:, _F["load"]] = _code(c.load)
    x[:, _F["night"]] = c.night
    x[:, _F["hour_local"]] = (c.ts / 3600.0 + local_utc_offset_h()) % 24.0
    for j, z in enumerate(ZONE_KINDS):
        x[:, _F[f"zone_{z}"]] = (c.zones >> j) & 1
    x[:, _F["recurrence"]] = c.recurrence
    x[:, _F["recent_alarms"]] = c.recent_alarms
    x[:, _F["continuous_driving_h"]] = c.continuous_driving_s / 3600.0
    x[:, _F["driving_today_h"]] = c.driving_today_s / 3600.0
    x[:, _F["derived"]] = c.derived
    x[:, _F["base"]] = _code(c.base)
    x[:, _F["tire_conditions"]] = c.tire_conditions
    hours = np.maximum(c.driver_hours, 0.0)
    x[:, _F["driver_alarms_per_h"]] = (c.driver_alarms + PRIOR_RATE_PER_H * PRIOR_HOURS) / (
        hours + PRIOR_HOURS
    )
    x[:, _F["driver_hours"]] = hours
    return x


def features_matrix(inputs: Sequence[GradingInput]) -> F64:
    """Snapshots → feature matrix: what serving calls, and training (via Columns) too."""
    return matrix_from_columns(columns_from_inputs(inputs))


# ---- explanations ----------------------------------------------------------------------


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe_group(group: str, c: Columns, i: int) -> str:
    """Row ``i``'s values of a feature group, in a dispatcher's words."""
    if group == "kind":
        k = int(c.kind[i])
        text = KINDS[k].replace("_", " ") if k >= 0 else "unknown kind"
        return f"{text} L{c.level[i]}" if c.level[i] else text
    if group == "speed":
        over = float(c.speed_kmh[i] - c.speed_limit_kmh[i])
        text = f"{c.speed_kmh[i]:.0f} km/h"
        return f"{text}, {over:.0f} over the limit" if over > 0 else text
    if group == "vehicle":
        load = int(c.load[i])
        cls = VEHICLE_CLASSES[c.vehicle_class[i]] if c.vehicle_class[i] >= 0 else "vehicle"
        return f"{cls}, {LOADS[load]} load" if load >= 0 and LOADS[load] != "unknown" else cls
    if group == "time":
        hour = int((c.ts[i] / 3600.0 + local_utc_offset_h()) % 24.0)
        return f"night ({hour:02d} h)" if c.night[i] else f"daytime ({hour:02d} h)"
    if group == "zone":
        kinds = sorted(c.zone_kinds(i))
        return (
            "in " + ", ".join(k.replace("_", " ") + " zone" for k in kinds)
            if kinds
            else ("outside any zone")
        )
    if group == "recurrence":
        return f"{_ordinal(int(c.recurrence[i]))} in 30 min, {c.recent_alarms[i]} alarms in all"
    if group == "driving":
        return f"{c.continuous_driving_s[i] / 3600.0:.1f} h without a break"
    if group == "tires":
        n = int(c.tire_conditions[i])
        return f"{n} tire condition{'s' if n != 1 else ''}" if n else "tires normal"
    if group == "driver":
        hours = max(float(c.driver_hours[i]), 0.0)
        rate = (c.driver_alarms[i] + PRIOR_RATE_PER_H * PRIOR_HOURS) / (hours + PRIOR_HOURS)
        return f"driver's history: {rate:.1f} alarms/h over {hours:.1f} h"
    raise KeyError(group)


def top_factors(
    contributions: F64, c: Columns, k: int = 3, min_logit: float = 0.05
) -> list[list[str]]:
    """Per row, the ``k`` groups that raised the risk most, in words with their odds factor.

    ``contributions`` is (rows × :data:`GROUPS`) in log-odds, in ``GROUPS`` order (what
    ``SeverityModel.contributions`` returns); groups that lowered the risk are left out.
    """
    names = list(GROUPS)
    out: list[list[str]] = []
    order = np.argsort(-contributions, axis=1)[:, :k]
    for i in range(len(contributions)):
        words = []
        for j in order[i]:
            value = float(contributions[i, j])
            if value < min_logit:
                break
            words.append(f"{describe_group(names[j], c, i)} (×{np.exp(value):.1f} odds)")
        out.append(words)
    return out
