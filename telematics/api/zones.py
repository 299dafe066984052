"""``/api/v1/zones``: geofences as GeoJSON. Everyone reads; safety managers and admins edit.

A change reaches the live vehicles within a few seconds: every server worker polls the
zones' version and reloads its index (``Hub.run_zones_poller``).
"""

from __future__ import annotations

from aiohttp import web

from telematics.api.auth import ZONE_EDITORS, require_role
from telematics.api.body import json_object
from telematics.api.errors import ApiError, not_found
from telematics.api.keys import DB
from telematics.geo.zones import feature_collection, zone_from_geojson, zone_to_geojson
from telematics.store import zones as zone_store


async def list_zones(request: web.Request) -> web.Response:
    async with request.app[DB].acquire() as conn:
        zones = await zone_store.list_zones(conn)
    return web.json_response(feature_collection(zones))


async def get_zone(request: web.Request) -> web.Response:
    async with request.app[DB].acquire() as conn:
        zone = await zone_store.get_zone(conn, request.match_info["zone_id"])
    if zone is None:
        raise not_found("zone")
    return web.json_response(zone_to_geojson(zone))


async def put_zone(request: web.Request) -> web.Response:
    """Create or replace the zone with this id from a GeoJSON Feature."""
    require_role(request, ZONE_EDITORS)
    zone_id = request.match_info["zone_id"]
    feature = await json_object(request)
    props = feature.get("properties")
    if isinstance(props, dict):
        given = props.get("id", feature.get("id"))
        if given is not None and given != zone_id:
            raise ApiError(422, "invalid_zone", f"id: {given!r} differs from the URL's {zone_id!r}")
        feature = {**feature, "properties": {**props, "id": zone_id}}
    zone = zone_from_geojson(feature)
    async with request.app[DB].acquire() as conn:
        outcome = await zone_store.upsert_zone(conn, zone)
    return web.json_response(zone_to_geojson(zone), status=201 if outcome == "added" else 200)


async def delete_zone(request: web.Request) -> web.Response:
    require_role(request, ZONE_EDITORS)
    async with request.app[DB].acquire() as conn:
        await zone_store.delete_zone(conn, request.match_info["zone_id"])
    return web.Response(status=204)
