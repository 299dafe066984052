"""Labelled alarm rows as CSV: what ``ml dataset`` writes and ``ml train --data`` reads.

One row per alarm: its ids, the :class:`GradingInput` fields (zone kinds joined by
``;``, ``ts`` in ISO 8601) and the label. Training reads them back into ``GradingInput``
objects and computes features through the serving path.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ml.synth import Alarms
from telematics.classify.context import GradingInput
from telematics.csvfile import file_errors
from telematics.errors import TelematicsError

_INPUT_FIELDS = (
    "kind", "level", "ts", "speed_kmh", "speed_limit_kmh", "vehicle_class", "load", "night",
    "zone_kinds", "recurrence", "continuous_driving_s", "driving_today_s", "derived", "base",
    "recent_alarms", "tire_conditions", "driver_alarms", "driver_hours",
)  # fmt: skip
HEADER = ("alarm_id", "vehicle_id", "fleet_id", "driver_id", *_INPUT_FIELDS, "label")


class DatasetError(TelematicsError):
    """A dataset file is missing columns or holds a value that cannot be read."""


@dataclass(frozen=True, slots=True)
class LabelledAlarm:
    alarm_id: str
    vehicle_id: str
    fleet_id: str
    driver_id: str | None
    input: GradingInput
    label: bool


def _cell(x: GradingInput, name: str) -> str:
    value = getattr(x, name)
    if name == "zone_kinds":
        return ";".join(sorted(value))
    if name == "ts":
        return str(value.isoformat())
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def write_csv(path: Path, rows: Iterable[LabelledAlarm]) -> int:
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(HEADER)
        for r in rows:
            cells = [_cell(r.input, name) for name in _INPUT_FIELDS]
            out.writerow([r.alarm_id, r.vehicle_id, r.fleet_id, r.driver_id or "", *cells,
                          "1" if r.label else "0"])  # fmt: skip
            n += 1
    return n


def read_csv(path: Path) -> list[LabelledAlarm]:
    with file_errors(path, DatasetError), path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(HEADER) - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: missing columns {', '.join(sorted(missing))}")
        out = []
        for row in reader:
            try:
                out.append(_row(row))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: a short row's missing fields are None
                raise DatasetError(f"{path}:{reader.line_num}: {exc}") from None
    return out


def _row(row: dict[str, str]) -> LabelledAlarm:
    x = GradingInput(
        kind=row["kind"],
        level=int(row["level"]) if row["level"] else None,
        ts=datetime.fromisoformat(row["ts"]),
        speed_kmh=float(row["speed_kmh"]),
        speed_limit_kmh=float(row["speed_limit_kmh"]) if row["speed_limit_kmh"] else None,
        vehicle_class=row["vehicle_class"],
        load=row["load"],
        night=row["night"] == "1",
        zone_kinds=frozenset(z for z in row["zone_kinds"].split(";") if z),
        recurrence=int(row["recurrence"]),
        continuous_driving_s=float(row["continuous_driving_s"]),
        driving_today_s=float(row["driving_today_s"]),
        derived=row["derived"] == "1",
        base=row["base"] or None,
        recent_alarms=int(row["recent_alarms"]),
        tire_conditions=int(row["tire_conditions"]),
        driver_alarms=int(row["driver_alarms"]),
        driver_hours=float(row["driver_hours"]),
    )
    return LabelledAlarm(row["alarm_id"], row["vehicle_id"], row["fleet_id"],
                         row["driver_id"] or None, x, row["label"] == "1")  # fmt: skip


def synthetic_rows(alarms: Alarms, prefix: str = "S") -> list[LabelledAlarm]:
    """Generated alarms as dataset rows (to write a synthetic set in the same format)."""
    inputs: Sequence[GradingInput] = alarms.columns.to_inputs()
    return [
        LabelledAlarm(
            f"{prefix}-{i}",
            f"V-{alarms.vehicle[i]:05d}",
            f"F-{alarms.fleet[i]:03d}",
            f"D-{alarms.driver[i]:05d}",
            x,
            bool(alarms.label[i]),
        )
        for i, x in enumerate(inputs)
    ]
