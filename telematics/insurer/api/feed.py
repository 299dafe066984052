"""``GET /api/v1/insurer/feed``: alarms and their later updates, by cursor."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from telematics.api.body import query_int
from telematics.api.errors import ApiError
from telematics.api.keys import DB
from telematics.insurer import cursor
from telematics.insurer.api.common import coverage_of, json_response
from telematics.insurer.api.gate import note_of, requires
from telematics.insurer.api.params import query_list, query_time
from telematics.insurer.store.feed import Change, read_page
from telematics.protocol.messages import DERIVED_KINDS, EVENT_KINDS, SEVERITIES

KINDS = EVENT_KINDS | DERIVED_KINDS


def _item(change: Change, with_location: bool) -> dict[str, Any]:
    alarm = change.alarm
    if not with_location:
        alarm = {k: v for k, v in alarm.items() if k not in ("lat", "lon")}
    return {
        "cursor": change.position.encode(),
        "change": change.change,
        "changed_at": change.at.isoformat(),
        "alarm": alarm,
    }


@requires("feed")
async def read_feed(request: web.Request) -> web.Response:
    try:
        after = cursor.decode(request.query.get("cursor"))
    except cursor.BadCursor as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from None
    limit = query_int(request, "limit", 100, 1, 1000)
    severities = query_list(request, "severity", SEVERITIES)
    kinds = query_list(request, "kind", KINDS)
    since, until = query_time(request, "since"), query_time(request, "until")
    async with request.app[DB].acquire() as conn:
        events = await coverage_of(request, conn, "events")
        locations = await coverage_of(request, conn, "locations")
        page = await read_page(
            conn,
            after,
            events,
            limit=limit,
            severities=severities,
            kinds=kinds,
            since=since,
            until=until,
        )
    items = [_item(c, locations.covers(c.alarm["vehicle_id"])) for c in page.changes]
    note_of(request).saw({c.alarm["vehicle_id"] for c in page.changes}, len(items))
    return json_response(
        {"items": items, "next_cursor": page.next_position.encode(), "has_more": page.has_more}
    )
