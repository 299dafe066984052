"""``/api/v1/insurer/scores/…``: risk per vehicle and per driver over a rolling window."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from aiohttp import web

from telematics.api.errors import not_found
from telematics.api.keys import CLOCK, DB
from telematics.insurer.api.common import coverage_of, json_response
from telematics.insurer.api.gate import note_of, requires
from telematics.insurer.api.keys import WEIGHTS
from telematics.insurer.api.params import invalid
from telematics.insurer.model import Coverage
from telematics.insurer.scoring import AlarmCount, Exposure, score
from telematics.insurer.store.exposure import alarm_counts, exposure, floor_hour

WINDOWS_DAYS = (7, 30, 90)


def _window_days(request: web.Request) -> int:
    raw = request.query.get("window_days", "30")
    if raw not in {str(d) for d in WINDOWS_DAYS}:
        raise invalid("window_days", f"one of {', '.join(map(str, WINDOWS_DAYS))}")
    return int(raw)


async def _subjects(request: web.Request, by: str, only: str | None) -> list[dict[str, Any]]:
    """Scores keyed by ``vehicle_id`` or ``driver_id`` (optionally only one subject)."""
    days = _window_days(request)
    now = request.app[CLOCK]()
    # From a whole hour: the window's hours then all come from the hourly rollups but the
    # latest ones (sql/012), whatever the minute of the request.
    since = floor_hour(now) - timedelta(days=days)
    weights = request.app[WEIGHTS]
    async with request.app[DB].acquire() as conn:
        cov = await coverage_of(request, conn, "events")
        if by == "vehicle_id" and only is not None:
            if not cov.covers(only):
                raise not_found("vehicle")
            cov = Coverage(cov.scope, {only: cov.windows[only]})
        expo = await exposure(
            conn,
            cov,
            since,
            now,
            gap_s=weights.segment_gap_s,
            min_kmh=weights.driving_min_kmh,
        )
        counts = await alarm_counts(conn, cov, since, now)
    km: dict[str, float] = defaultdict(float)
    hours: dict[str, float] = defaultdict(float)
    vehicles: dict[str, set[str]] = defaultdict(set)
    for e in expo:
        key = getattr(e, by)
        if key is None:
            continue  # distance without a known driver scores no driver
        km[key] += e.km
        hours[key] += e.hours
        vehicles[key].add(e.vehicle_id)
    alarms: dict[str, list[AlarmCount]] = defaultdict(list)
    for a in counts:
        key = getattr(a, by)
        if key is None:
            continue
        alarms[key].append(AlarmCount(a.kind, a.severity, a.count))
        vehicles[key].add(a.vehicle_id)
    subjects = sorted(set(km) | set(alarms))
    if only is not None:
        subjects = [s for s in subjects if s == only]
    out = []
    for s in subjects:
        result = score(Exposure(km[s], hours[s]), alarms[s], weights)
        out.append(
            {
                by: s,
                "window_days": days,
                "from": since.isoformat(),
                "until": now.isoformat(),
                **({"vehicles": sorted(vehicles[s])} if by == "driver_id" else {}),
                **result,
            }
        )
    note_of(request).saw({v for s in subjects for v in vehicles[s]}, len(out))
    return out


@requires("scores")
async def vehicle_scores(request: web.Request) -> web.Response:
    return json_response({"scores": await _subjects(request, "vehicle_id", None)})


@requires("scores")
async def vehicle_score(request: web.Request) -> web.Response:
    vehicle_id = request.match_info["vehicle_id"]
    found = await _subjects(request, "vehicle_id", vehicle_id)
    if not found:  # covered but no data in the window: a score of nothing
        found = [{"vehicle_id": vehicle_id, **score(Exposure(0, 0), [], request.app[WEIGHTS])}]
    return json_response(found[0])


@requires("scores")
async def driver_scores(request: web.Request) -> web.Response:
    return json_response({"scores": await _subjects(request, "driver_id", None)})


@requires("scores")
async def driver_score(request: web.Request) -> web.Response:
    found = await _subjects(request, "driver_id", request.match_info["driver_id"])
    if not found:
        raise not_found("driver")
    return json_response(found[0])
