"""Mounting the operators' API on the application."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg
from aiohttp import web

from telematics.api import alarms, fleet, zones
from telematics.api.auth import operator_auth
from telematics.api.errors import json_errors
from telematics.api.keys import CLOCK, DB, ESCALATION
from telematics.intervene.escalation import InterventionPolicy


def setup_api(
    app: web.Application,
    escalation: InterventionPolicy,
    clock: Callable[[], datetime],
) -> None:
    """Routes and middlewares; ``bind_pool`` must run once the pool exists."""
    app.middlewares.append(json_errors)  # outermost: also renders the auth errors
    app.middlewares.append(operator_auth)
    app[ESCALATION] = escalation
    app[CLOCK] = clock
    r = app.router
    r.add_get("/api/v1/zones", zones.list_zones)
    r.add_get("/api/v1/zones/{zone_id}", zones.get_zone)
    r.add_put("/api/v1/zones/{zone_id}", zones.put_zone)
    r.add_delete("/api/v1/zones/{zone_id}", zones.delete_zone)
    r.add_get("/api/v1/alarms", alarms.list_alarms)
    r.add_get("/api/v1/alarms/{alarm_id}", alarms.get_alarm)
    r.add_post("/api/v1/alarms/{alarm_id}/acknowledge", alarms.acknowledge)
    r.add_post("/api/v1/alarms/{alarm_id}/assign", alarms.assign)
    r.add_post("/api/v1/alarms/{alarm_id}/comment", alarms.comment)
    r.add_post("/api/v1/alarms/{alarm_id}/clear", alarms.clear)
    r.add_get("/api/v1/vehicles", fleet.list_vehicles)
    r.add_get("/api/v1/vehicles/{vehicle_id}", fleet.get_vehicle)
    r.add_get("/api/v1/kpis", fleet.get_kpis)


def bind_pool(app: web.Application, pool: asyncpg.Pool) -> None:
    app[DB] = pool
