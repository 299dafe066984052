"""``GET /api/v1/insurer/vehicles``: what the caller's policies cover now."""

from __future__ import annotations

from aiohttp import web

from telematics.api.keys import DB
from telematics.insurer.api.common import coverage_of, json_response
from telematics.insurer.api.gate import note_of
from telematics.insurer.model import CONSENTS


async def list_vehicles(request: web.Request) -> web.Response:
    async with request.app[DB].acquire() as conn:
        by_consent = {c: await coverage_of(request, conn, c) for c in CONSENTS}
        ids = sorted({v for cov in by_consent.values() for v in cov.vehicle_ids})
        rows = await conn.fetch(
            """SELECT id, fleet_id, vehicle_class, plate FROM vehicles
               WHERE id = ANY ($1::text[]) ORDER BY id""",
            ids,
        )
    vehicles = []
    for r in rows:
        windows = [
            {"from": w.start.isoformat(), "until": w.end.isoformat()}
            for w in sorted(
                {w for cov in by_consent.values() for w in cov.windows.get(r["id"], ())},
                key=lambda w: (w.start, w.end),
            )
        ]
        vehicles.append(
            {
                **dict(r),
                "consent": [c for c in CONSENTS if by_consent[c].covers(r["id"])],
                "covered": windows,
            }
        )
    note_of(request).saw(ids, len(vehicles))
    return json_response({"vehicles": vehicles})
