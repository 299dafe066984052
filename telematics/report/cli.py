"""``telematics report interventions``: delivery and recurrence of interventions.

The group is wired into ``telematics.cli`` with :func:`add_arguments`; ``args.func`` is
:func:`report_command`, called as ``func(args, settings)`` like every other command.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import orjson

from telematics.cliargs import iso_datetime
from telematics.config import Settings
from telematics.errors import TelematicsError, UsageError
from telematics.intervene.escalation import load_policy as load_escalation_policy
from telematics.report.interventions import Row, report_interventions
from telematics.report.recurrence import MaxGap
from telematics.store.database import run_with_db

DEFAULT_PERIOD = timedelta(days=7)


class ReportError(TelematicsError):
    """The report cannot be made as asked (e.g. an empty period)."""


FORMATS = ("table", "csv", "json")


def add_arguments(subparsers: Any) -> None:
    """Register the ``report`` command group on the top-level ``add_subparsers()`` object."""
    report = subparsers.add_parser("report", help="reports: did the interventions work?")
    report.set_defaults(func=report_command)
    sub = report.add_subparsers(dest="report_command", required=True)
    inter = sub.add_parser(
        "interventions",
        help="delivery and 10/30-minute recurrence by kind, severity and action",
        description="Interventions issued in [--since, --until): how many, delivered share, "
        "median delivery time, and how often the same behaviour recurred on the vehicle "
        "within 10 and 30 minutes (over the interventions whose 30-minute window has closed).",
    )
    inter.add_argument(
        "--since",
        type=iso_datetime,
        help="ISO 8601, UTC unless an offset is given (default: until - 7d)",
    )
    inter.add_argument("--until", type=iso_datetime, help="ISO 8601, exclusive (default: now)")
    inter.add_argument("--fleet", help="only the vehicles of this fleet")
    inter.add_argument("--format", choices=FORMATS, default="table", help="default: table")


def report_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``report interventions``; errors are ``TelematicsError`` (printed by ``main``)."""
    if args.report_command != "interventions":
        raise UsageError(f"unknown report {args.report_command!r}")
    now = datetime.now(UTC)
    until: datetime = args.until or now
    try:
        since: datetime = args.since or until - DEFAULT_PERIOD
    except OverflowError:  # --until in the first week of year 1: no default period before it
        raise ReportError(f"--until {until.isoformat()}: too early; give --since") from None
    if until <= since:
        raise ReportError(
            f"--until ({until.isoformat()}) must be after --since ({since.isoformat()})"
        )
    # Repeats are grouped as the server groups them: an alarm stays open until its
    # behaviour has been absent for the interventions policy's auto-clear time.
    max_gap = MaxGap.from_clear_policy(load_escalation_policy(settings.escalation_file).auto_clear)

    rows = run_with_db(
        settings,
        lambda conn: report_interventions(conn, since, until, args.fleet, now=now, max_gap=max_gap),
    )
    _WRITERS[args.format](rows, since, until, args.fleet, sys.stdout)
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _labels(row: Row) -> tuple[str, str, str]:
    if row.overall:
        return ("all", "all", "all")
    return (row.kind or "", row.severity or "", row.action or "")


_HEADERS = (
    "kind",
    "severity",
    "action",
    "interventions",
    "delivered",
    "median delivery s",
    "evaluated",
    "recurred 10m",
    "rate 10m",
    "recurred 30m",
    "rate 30m",
)


def _write_table(
    rows: Sequence[Row], since: datetime, until: datetime, fleet: str | None, out: TextIO
) -> None:
    print(
        f"interventions issued {since.isoformat()} to {until.isoformat()}"
        + (f", fleet {fleet}" if fleet else ""),
        file=sys.stderr,
    )
    cells = [
        (
            *_labels(r),
            str(r.interventions),
            f"{r.delivered} ({_pct(r.delivered_share)})",
            _secs(r.median_delivery_s),
            str(r.evaluated),
            str(r.recurred_10m),
            _pct(r.recurrence_rate_10m),
            str(r.recurred_30m),
            _pct(r.recurrence_rate_30m),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[n]) for c in cells)) for n, h in enumerate(_HEADERS)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if n < 3 else v.rjust(w)
            for n, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out.write(line(_HEADERS) + "\n")
    for n, c in enumerate(cells):
        if rows[n].overall and n:
            out.write(line(["-" * w for w in widths]) + "\n")
        out.write(line(c) + "\n")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _record(row: Row) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "severity": row.severity,
        "action": row.action,
        "overall": row.overall,
        "interventions": row.interventions,
        "delivered": row.delivered,
        "delivered_share": _round(row.delivered_share),
        "median_delivery_s": _round(row.median_delivery_s, 3),
        "evaluated": row.evaluated,
        "recurred_10m": row.recurred_10m,
        "recurrence_rate_10m": _round(row.recurrence_rate_10m),
        "recurred_30m": row.recurred_30m,
        "recurrence_rate_30m": _round(row.recurrence_rate_30m),
    }


#: The JSON record's fields, but "overall": its kind, severity and action say "all".
_CSV_FIELDS = (
    "kind",
    "severity",
    "action",
    "interventions",
    "delivered",
    "delivered_share",
    "median_delivery_s",
    "evaluated",
    "recurred_10m",
    "recurrence_rate_10m",
    "recurred_30m",
    "recurrence_rate_30m",
)


def _write_csv(
    rows: Sequence[Row], since: datetime, until: datetime, fleet: str | None, out: TextIO
) -> None:
    writer = csv.writer(out, lineterminator="\n")
    fields = _CSV_FIELDS
    writer.writerow(fields)
    for row in rows:
        record = _record(row)
        record.update(zip(("kind", "severity", "action"), _labels(row), strict=True))
        writer.writerow(["" if record[f] is None else record[f] for f in fields])


def _write_json(
    rows: Sequence[Row], since: datetime, until: datetime, fleet: str | None, out: TextIO
) -> None:
    doc = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "fleet": fleet,
        "rows": [_record(r) for r in rows],
    }
    out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


_WRITERS: dict[str, Callable[[Sequence[Row], datetime, datetime, str | None, TextIO], None]] = {
    "table": _write_table,
    "csv": _write_csv,
    "json": _write_json,
}
