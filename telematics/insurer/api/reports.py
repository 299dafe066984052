"""``GET /api/v1/insurer/reports/loss-control``: one fleet and month, JSON or CSV."""

from __future__ import annotations

from aiohttp import web

from telematics.api.body import query_choice
from telematics.api.errors import not_found
from telematics.api.keys import CLOCK, DB, ESCALATION
from telematics.insurer import loss_report
from telematics.insurer.api.common import coverage_of, json_response
from telematics.insurer.api.gate import note_of, requires
from telematics.insurer.api.keys import WEIGHTS
from telematics.insurer.api.params import invalid
from telematics.insurer.model import Coverage
from telematics.insurer.store import loss
from telematics.insurer.store.exposure import alarm_counts, exposure
from telematics.report.recurrence import MaxGap


@requires("reports")
async def loss_control(request: web.Request) -> web.StreamResponse:
    fleet = request.query.get("fleet")
    month = request.query.get("month")
    if not fleet:
        raise invalid("fleet", "required")
    if not month:
        raise invalid("month", "required, YYYY-MM")
    since, until = loss_report.month_bounds(month)
    fmt = query_choice(request, "format", ("json", "csv")) or "json"
    weights = request.app[WEIGHTS]
    max_gap = MaxGap.from_clear_policy(request.app[ESCALATION].auto_clear)
    async with request.app[DB].acquire() as conn:
        cov = await coverage_of(request, conn, "events")
        in_fleet = {
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM vehicles WHERE fleet_id = $1 AND id = ANY ($2::text[])",
                fleet,
                cov.vehicle_ids,
            )
        }
        if not in_fleet:
            raise not_found("fleet")
        cov = Coverage(cov.scope, {v: w for v, w in cov.windows.items() if v in in_fleet})
        expo = await exposure(
            conn, cov, since, until, gap_s=weights.segment_gap_s, min_kmh=weights.driving_min_kmh
        )
        alarms = await alarm_counts(conn, cov, since, until)
        inter = await loss.interventions(conn, cov, since, until, request.app[CLOCK](), max_gap)
    report = loss_report.build(fleet, month, in_fleet, expo, alarms, inter)
    note_of(request).saw(in_fleet, len(report["by_kind"]))
    if fmt == "csv":
        return web.Response(
            text=loss_report.to_csv(report),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="loss-{fleet}-{month}.csv"'},
        )
    return json_response(report)
