"""Typed keys for the application and request state the API uses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg
from aiohttp import web

from telematics.intervene.escalation import InterventionPolicy
from telematics.store.operators import Operator

DB = web.AppKey("api_db", asyncpg.Pool)
ESCALATION = web.AppKey("api_escalation", InterventionPolicy)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("api_clock")
OPERATOR = web.RequestKey("api_operator", Operator)
__all__ = ["CLOCK", "DB", "ESCALATION", "OPERATOR", "Operator"]
