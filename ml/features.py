"""One feature function for training and serving: grading snapshots → a numeric matrix.

Each feature is one formula in :data:`FORMULAS`, written over a snapshot's fields, and
every path evaluates those same formulas: :func:`matrix_from_columns` over
:class:`Columns` (one numpy array per field: training and evaluation, a million rows in
a second, which ``ml/synth.py`` produces directly), :func:`feature_rows` over
:class:`Row` (one snapshot's fields as plain numbers: serving, where a micro-batch holds
one to eight alarms and a numpy call per feature and row cost more than the features).
Both read a :class:`GradingInput` through :func:`read_row`; a test checks that every
path gives the very same matrix, so there is no train/serve skew to drift into.

Categorical features (kind, vehicle class, load) are integer codes over fixed
vocabularies (``NaN`` for a value the vocabulary lacks): the gradient-boosted trees split
on them natively. A model records :data:`FEATURE_NAMES` and refuses to load against a
different list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple

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

CATEGORICAL: tuple[str, ...] = ("kind", "vehicle_class", "load")


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
        return _zone_kinds(int(self.zones[i]))

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


class Row(NamedTuple):
    """One snapshot's fields as plain numbers: the fields of :class:`Columns`, in order."""

    kind: int
    level: int
    ts: float
    speed_kmh: float
    speed_limit_kmh: float
    vehicle_class: int
    load: int
    night: bool
    zones: int
    recurrence: int
    continuous_driving_s: float
    driving_today_s: float
    derived: bool
    base: int
    recent_alarms: int
    tire_conditions: int
    driver_alarms: int
    driver_hours: float


_DTYPE_OF: dict[str, type[np.generic]] = {
    "I64": np.int64, "F64": np.float64, "NDArray[np.bool_]": np.bool_,
}  # fmt: skip
_DTYPES = tuple(_DTYPE_OF[str(f.type)] for f in fields(Columns))  # Columns' annotations
_ZONE_BIT = {z: 1 << j for j, z in enumerate(ZONE_KINDS)}


def _zone_kinds(bits: int) -> frozenset[str]:
    return frozenset(z for j, z in enumerate(ZONE_KINDS) if bits >> j & 1)


def read_row(x: GradingInput) -> Row:
    """A snapshot's fields as codes and numbers (the one reading of a GradingInput)."""
    bits = 0
    for z in x.zone_kinds:
        bits |= _ZONE_BIT.get(z, 0)
    return Row(
        _KIND.get(x.kind, -1),
        x.level or 0,
        x.ts.timestamp(),
        x.speed_kmh,
        math.nan if x.speed_limit_kmh is None else x.speed_limit_kmh,
        _CLASS.get(x.vehicle_class, -1),
        _LOAD.get(x.load, -1),
        x.night,
        bits,
        x.recurrence,
        x.continuous_driving_s,
        x.driving_today_s,
        x.derived,
        _BASE.get(x.base, -1),
        x.recent_alarms,
        x.tire_conditions,
        x.driver_alarms,
        x.driver_hours,
    )


def columns_from_rows(rows: Sequence[Row]) -> Columns:
    """Rows into columns (a Row's fields are Columns' fields, in order: a test checks)."""
    if not rows:
        return Columns(*(np.empty(0, dtype) for dtype in _DTYPES))
    by_field = zip(*rows, strict=True)  # each Row has every field
    return Columns(*(np.array(col, dtype) for col, dtype in zip(by_field, _DTYPES, strict=True)))


def columns_from_inputs(inputs: Sequence[GradingInput]) -> Columns:
    """Read snapshots into columns."""
    return columns_from_rows([read_row(x) for x in inputs])


@cache
def local_utc_offset_h() -> float:
    """The fleet's local UTC offset (the risk policy's time zone) for the hour feature.

    One offset for all rows: exact for Asia/Shanghai (no DST); in a DST zone the hour is
    off by one for part of the year, which ``night`` (computed per row) does not suffer.
    """
    tz = load_policy().driving.tz
    offset = datetime(2026, 1, 1, tzinfo=UTC).astimezone(tz).utcoffset()
    return 0.0 if offset is None else offset.total_seconds() / 3600.0


# The formulas take a Columns (arrays) or a Row (numbers): these two helpers are the only
# operations that differ between the two, and a test holds them to the same results.
def _code(values: Any) -> Any:
    """A vocabulary code as a number, NaN (missing to the trees) when not in it."""
    if isinstance(values, np.ndarray):
        out = values.astype(np.float64)
        out[values < 0] = np.nan
        return out
    return float(values) if values >= 0 else math.nan


def _not_negative(values: Any) -> Any:
    return np.maximum(values, 0.0) if isinstance(values, np.ndarray) else max(values, 0.0)


def _driver_rate(c: Any) -> Any:
    hours = _not_negative(c.driver_hours)
    return (c.driver_alarms + PRIOR_RATE_PER_H * PRIOR_HOURS) / (hours + PRIOR_HOURS)


def _hour_local(c: Any) -> Any:
    return (c.ts / 3600.0 + local_utc_offset_h()) % 24.0


def _zone(j: int) -> Callable[[Any], Any]:
    return lambda c: (c.zones >> j) & 1


#: Every feature: its name and its formula over a snapshot's fields (Columns or Row).
FORMULAS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("kind", lambda c: _code(c.kind)),
    ("level", lambda c: c.level),
    ("speed_kmh", lambda c: c.speed_kmh),
    ("over_limit_kmh", lambda c: c.speed_kmh - c.speed_limit_kmh),
    ("vehicle_class", lambda c: _code(c.vehicle_class)),
    ("load", lambda c: _code(c.load)),
    ("night", lambda c: c.night),
    ("hour_local", _hour_local),
    *((f"zone_{z}", _zone(j)) for j, z in enumerate(ZONE_KINDS)),
    ("recurrence", lambda c: c.recurrence),
    ("recent_alarms", lambda c: c.recent_alarms),
    ("continuous_driving_h", lambda c: c.continuous_driving_s / 3600.0),
    ("driving_today_h", lambda c: c.driving_today_s / 3600.0),
    ("derived", lambda c: c.derived),
    ("base", lambda c: _code(c.base)),
    ("tire_conditions", lambda c: c.tire_conditions),
    ("driver_alarms_per_h", _driver_rate),
    ("driver_hours", lambda c: _not_negative(c.driver_hours)),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FORMULAS)
_FUNCTIONS = tuple(f for _, f in FORMULAS)
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


def matrix_from_columns(c: Columns) -> F64:
    """The feature matrix, one row per snapshot, columns in :data:`FEATURE_NAMES` order."""
    x = np.empty((len(c), len(FEATURE_NAMES)), np.float64)
    for j, formula in enumerate(_FUNCTIONS):
        x[:, j] = formula(c)
    return x


def feature_rows(rows: Sequence[Row]) -> list[list[float]]:
    """The same features for a few rows, in plain Python (the serving path)."""
    return [[float(formula(r)) for formula in _FUNCTIONS] for r in rows]


def features_matrix(inputs: Sequence[GradingInput]) -> F64:
    """Snapshots → feature matrix, as serving computes it."""
    rows = feature_rows([read_row(x) for x in inputs])
    return np.array(rows, np.float64).reshape(len(rows), len(FEATURE_NAMES))


# ---- explanations ----------------------------------------------------------------------


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe_group(group: str, r: Row) -> str:
    """A snapshot's values of a feature group, in a dispatcher's words."""
    if group == "kind":
        text = KINDS[r.kind].replace("_", " ") if r.kind >= 0 else "unknown kind"
        return f"{text} L{r.level}" if r.level else text
    if group == "speed":
        over = r.speed_kmh - r.speed_limit_kmh
        text = f"{r.speed_kmh:.0f} km/h"
        return f"{text}, {over:.0f} over the limit" if over > 0 else text
    if group == "vehicle":
        cls = VEHICLE_CLASSES[r.vehicle_class] if r.vehicle_class >= 0 else "vehicle"
        load = r.load
        return f"{cls}, {LOADS[load]} load" if load >= 0 and LOADS[load] != "unknown" else cls
    if group == "time":
        hour = int(_hour_local(r))
        return f"night ({hour:02d} h)" if r.night else f"daytime ({hour:02d} h)"
    if group == "zone":
        kinds = sorted(_zone_kinds(r.zones))
        return (
            "in " + ", ".join(k.replace("_", " ") + " zone" for k in kinds)
            if kinds
            else ("outside any zone")
        )
    if group == "recurrence":
        return f"{_ordinal(r.recurrence)} in 30 min, {r.recent_alarms} alarms in all"
    if group == "driving":
        return f"{r.continuous_driving_s / 3600.0:.1f} h without a break"
    if group == "tires":
        n = r.tire_conditions
        return f"{n} tire condition{'s' if n != 1 else ''}" if n else "tires normal"
    if group == "driver":
        hours = _not_negative(r.driver_hours)
        return f"driver's history: {_driver_rate(r):.1f} alarms/h over {hours:.1f} h"
    raise KeyError(group)


def top_factors(
    contributions: F64, rows: Sequence[Row], k: int = 3, min_logit: float = 0.05
) -> list[list[str]]:
    """Per row, the ``k`` groups that raised the risk most, in words with their odds factor.

    ``contributions`` is (rows × :data:`GROUPS`) in log-odds, in ``GROUPS`` order (what
    ``SeverityModel.assess`` returns second); groups that lowered the risk are left out.
    """
    names = list(GROUPS)
    out: list[list[str]] = []
    order = np.argsort(-contributions, axis=1)[:, :k].tolist()
    for r, parts, top in zip(rows, contributions.tolist(), order, strict=True):
        words = []
        for j in top:
            value = parts[j]
            if value < min_logit:
                break
            words.append(f"{describe_group(names[j], r)} (×{math.exp(value):.1f} odds)")
        out.append(words)
    return out
