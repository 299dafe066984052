"""``/api/v1/vehicles`` and ``/api/v1/kpis``: the live fleet, one vehicle, the KPIs,
each limited to the caller's fleets (another fleet's vehicle is a 404)."""

from __future__ import annotations

from aiohttp import web

from telematics.api.auth import operator_of
from telematics.api.body import query_int
from telematics.api.errors import not_found
from telematics.api.keys import CLOCK, DB
from telematics.store import fleetview


async def list_vehicles(request: web.Request) -> web.Response:
    operator = operator_of(request)
    async with request.app[DB].acquire() as conn:
        rows = await fleetview.vehicles(conn, operator.fleet_filter(), request.app[CLOCK]())
    return web.json_response({"vehicles": rows})


async def get_vehicle(request: web.Request) -> web.Response:
    operator = operator_of(request)
    vehicle_id = request.match_info["vehicle_id"]
    async with request.app[DB].acquire() as conn:
        fleet = await fleetview.fleet_of_vehicle(conn, vehicle_id)
        if fleet is None or not operator.sees_fleet(fleet):
            raise not_found("vehicle")
        detail = await fleetview.vehicle_detail(conn, vehicle_id, request.app[CLOCK]())
    if detail is None:
        raise not_found("vehicle")
    return web.json_response(detail)


async def get_kpis(request: web.Request) -> web.Response:
    operator = operator_of(request)
    days = query_int(request, "days", 30, 1, 366)
    async with request.app[DB].acquire() as conn:
        figures = await fleetview.kpis(conn, operator.fleet_filter(), request.app[CLOCK](), days)
    return web.json_response(figures)
