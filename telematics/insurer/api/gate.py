"""Authentication, scope checks, errors and the access log of the insurers' API.

The insurers' API has its own credentials (API keys ``ik_…``), so the operators'
middlewares (operator tokens, browser sessions) must not see its requests. This
middleware is installed outermost and serves every ``/api/v1/insurer/`` request itself:
it runs the matched route's handler directly, which also skips the middlewares added
after it. Every authenticated request is written to ``insurer_access_log``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from telematics.api.errors import (
    ApiError,
    Handler,
    error_response,
    http_error_response,
    refuse_nul_in_url,
)
from telematics.api.keys import DB
from telematics.errors import TelematicsError
from telematics.insurer.api.keys import ACCESS, IDENTITY, AccessNote
from telematics.insurer.model import InsurerError, KeyIdentity, UnknownInsurer
from telematics.insurer.store.access import log_access
from telematics.insurer.store.claims import IdempotencyConflict
from telematics.insurer.store.insurers import identity_for_key

log = logging.getLogger(__name__)

PREFIX = "/api/v1/insurer"
PUBLIC = frozenset({f"{PREFIX}/openapi.json"})


def _as_error(exc: TelematicsError) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, IdempotencyConflict):
        return ApiError(
            422, "idempotency_conflict", "Idempotency-Key: already used for another request"
        )
    if isinstance(exc, InsurerError):
        return ApiError(422, "invalid_field", str(exc))
    log.exception("insurer API request failed", exc_info=exc)
    return ApiError(500, "internal", "internal error")


async def _identity(request: web.Request) -> KeyIdentity:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "Authorization: Bearer <insurer API key> required")
    async with request.app[DB].acquire() as conn:
        try:
            return await identity_for_key(conn, key.strip())
        except UnknownInsurer:
            raise ApiError(401, "unauthorized", "unknown or revoked API key") from None


async def _serve(request: web.Request) -> web.StreamResponse:
    route_handler = request.match_info.handler
    try:
        refuse_nul_in_url(request)
        if request.path in PUBLIC:
            return await route_handler(request)
        request[IDENTITY] = await _identity(request)
        return await route_handler(request)
    except TelematicsError as exc:
        err = _as_error(exc)
        return error_response(err.status, err.code, err.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(exc)


@web.middleware
async def insurer_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
        return await handler(request)
    note = AccessNote()
    request[ACCESS] = note
    response = await _serve(request)
    identity = request.get(IDENTITY)
    if identity is not None:
        async with request.app[DB].acquire() as conn:
            await log_access(
                conn,
                identity.insurer_id,
                identity.prefix,
                request.method,
                request.path,
                request.query_string,
                response.status,
                note.vehicle_ids,
                note.items,
            )
    return response


def requires(
    scope: str,
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A handler that needs ``scope`` on the API key (403 otherwise)."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def scoped(request: web.Request) -> web.StreamResponse:
            if scope not in request[IDENTITY].scopes:
                raise ApiError(403, "forbidden", f"this API key lacks the {scope!r} scope")
            return await handler(request)

        return scoped

    return wrap


def identity_of(request: web.Request) -> KeyIdentity:
    return request[IDENTITY]


def note_of(request: web.Request) -> AccessNote:
    return request[ACCESS]
