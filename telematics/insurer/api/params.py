"""Query parameters of the insurers' API beyond ``telematics.api.body``: times and lists."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from aiohttp import web

from telematics.api.errors import ApiError


def invalid(name: str, problem: str) -> ApiError:
    return ApiError(422, "invalid_field", f"{name}: {problem}")


def parse_time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(name, "must be an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise invalid(name, "must carry a UTC offset (e.g. 2026-11-02T08:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 or 9999-12-31T23:59-14:00 in UTC
        raise invalid(name, "out of range once in UTC") from None


def query_time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    return None if raw is None else parse_time(name, raw)


def query_list(request: web.Request, name: str, allowed: Collection[str]) -> list[str] | None:
    """``a,b,c`` of allowed values, or None when absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    values = [v.strip() for v in raw.split(",") if v.strip()]
    bad = sorted(set(values) - set(allowed))
    if not values or bad:
        raise invalid(name, "a comma-separated list of known values")
    return values
