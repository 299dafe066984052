"""JSON errors with a stable code, for every failure of an API request."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from telematics.errors import TelematicsError
from telematics.geo.zones import UnknownZone, ZoneError
from telematics.intervene.lifecycle import AlarmError
from telematics.store.alarms import UnknownAlarm

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(TelematicsError):
    """An API request we refuse; ``code`` is stable, ``message`` is for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str) -> ApiError:
    # The same answer whether it does not exist or is outside the caller's fleets.
    return ApiError(404, "not_found", f"no {what}")


def refuse_nul_in_url(request: web.Request) -> None:
    """PostgreSQL text cannot hold NUL (the query would fail: a 500), and no id or filter
    with one can match anything."""
    if "\x00" in request.path or "\x00" in request.query_string:
        raise ApiError(422, "invalid_field", "path or query: contains a NUL character")


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _as_api_error(exc: TelematicsError) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnknownAlarm):
        return not_found("alarm")
    if isinstance(exc, UnknownZone):
        return not_found("zone")
    if isinstance(exc, ZoneError):
        return ApiError(422, "invalid_zone", str(exc))
    if isinstance(exc, AlarmError):
        return ApiError(409, "alarm_conflict", str(exc))
    log.exception("API request failed", exc_info=exc)
    return ApiError(500, "internal", "internal error")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /api/: every error as ``{"error": {"code", "message"}}``, never HTML."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        refuse_nul_in_url(request)
        return await handler(request)
    except TelematicsError as exc:
        err = _as_api_error(exc)
        return error_response(err.status, err.code, err.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(exc)


def http_error_response(exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no route, wrong method, body too large) in the JSON shape."""
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status, "http_error"
    )
    return error_response(exc.status, code, exc.reason)
