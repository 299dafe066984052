"""The loss-control report of one fleet and month, as JSON-ready data and as CSV (pure).

Per behaviour (alarm kind): alarms by severity, interventions, delivery times and
recurrence after intervention; for the whole: the same plus distance, driving time and
collisions per million km.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from telematics.insurer.model import InsurerError
from telematics.insurer.store.exposure import AlarmRow, ExposureRow
from telematics.insurer.store.loss import InterventionRow
from telematics.protocol.messages import SEVERITIES

COLLISION_KINDS = ("collision", "rollover")
_MONTH = re.compile(r"\A(\d{4})-(0[1-9]|1[0-2])\Z")

CSV_COLUMNS = (
    "fleet",
    "month",
    "kind",
    "alarms",
    *SEVERITIES,
    "interventions",
    "delivered",
    "median_delivery_s",
    "p90_delivery_s",
    "evaluated",
    "recurred_10m",
    "recurred_30m",
    "recurrence_rate_30m",
    "km",
    "driving_hours",
    "collisions",
    "collisions_per_million_km",
)


def month_bounds(text: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` → [first instant, first instant of the next month), UTC."""
    match = _MONTH.match(text)
    if match is None:
        raise InsurerError("month: must be YYYY-MM")
    year, month = int(match.group(1)), int(match.group(2))
    try:
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    except ValueError:  # year 0000, or 9999-12, which ends in year 10000
        raise InsurerError(f"month: {text} is out of range") from None
    return start, end


def _intervention_fields(row: InterventionRow | None) -> dict[str, Any]:
    if row is None:
        row = InterventionRow(None, 0, 0, None, None, 0, 0, 0)
    return {
        "interventions": row.interventions,
        "delivered": row.delivered,
        "median_delivery_s": row.median_delivery_s,
        "p90_delivery_s": row.p90_delivery_s,
        "evaluated": row.evaluated,
        "recurred_10m": row.recurred_10m,
        "recurred_30m": row.recurred_30m,
        "recurrence_rate_30m": round(row.recurred_30m / row.evaluated, 4)
        if row.evaluated
        else None,
    }


def build(
    fleet: str,
    month: str,
    vehicles: Iterable[str],
    exposure: Iterable[ExposureRow],
    alarms: Iterable[AlarmRow],
    interventions: Iterable[InterventionRow],
) -> dict[str, Any]:
    exposure_rows = list(exposure)
    km = sum(e.km for e in exposure_rows)
    hours = sum(e.hours for e in exposure_rows)
    split: dict[str, dict[str, int]] = {}
    for a in alarms:
        split.setdefault(a.kind, dict.fromkeys(SEVERITIES, 0))[a.severity] += a.count
    by_inter = {r.kind: r for r in interventions}
    kinds = sorted(set(split) | {k for k in by_inter if k is not None})
    rows = []
    for kind in kinds:
        sev = split.get(kind, dict.fromkeys(SEVERITIES, 0))
        rows.append(
            {
                "kind": kind,
                "alarms": sum(sev.values()),
                "by_severity": sev,
                **_intervention_fields(by_inter.get(kind)),
            }
        )
    total_sev = {s: sum(r["by_severity"][s] for r in rows) for s in SEVERITIES}
    collisions = sum(r["alarms"] for r in rows if r["kind"] in COLLISION_KINDS)
    return {
        "fleet": fleet,
        "month": month,
        "vehicles": sorted(set(vehicles)),
        "km": round(km, 3),
        "driving_hours": round(hours, 3),
        "alarms": sum(total_sev.values()),
        "by_severity": total_sev,
        **_intervention_fields(by_inter.get(None)),
        "collisions": collisions,
        "collisions_per_million_km": round(collisions / km * 1e6, 3) if km > 0 else None,
        "by_kind": rows,
    }


def to_csv(report: dict[str, Any]) -> str:
    """One row per behaviour, then the fleet's total (kind ``all``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    base = {"fleet": report["fleet"], "month": report["month"]}
    for r in report["by_kind"]:
        writer.writerow(
            {
                **base,
                **{k: v for k, v in r.items() if k != "by_severity"},
                **r["by_severity"],
                "collisions": r["alarms"] if r["kind"] in COLLISION_KINDS else 0,
            }
        )
    total = {k: v for k, v in report.items() if k in CSV_COLUMNS}
    writer.writerow({**total, **report["by_severity"], "kind": "all"})
    return out.getvalue()
