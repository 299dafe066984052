"""Who is asking: an operator's bearer token (scripts, ``telematics user token``) or a
dashboard session cookie (``telematics user add``), and what their role allows.

Cookie-authenticated requests that change state must echo the session's CSRF token in
``X-CSRF-Token``; a bearer token is not sent by browsers on their own, so it needs none.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from telematics.api.errors import ApiError, Handler
from telematics.api.keys import CLOCK, DB, OPERATOR
from telematics.store.operators import Operator, UnknownOperator, operator_for_token
from telematics.store.sessions import Session, session_for

#: Roles allowed to change zones (and, later, the policies).
ZONE_EDITORS = frozenset({"safety_manager", "admin"})
SESSION_COOKIE = "tm_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def session_of(request: web.Request) -> Session | None:
    """The request's dashboard session, if its cookie names a live one."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    async with request.app[DB].acquire() as conn:
        try:
            return await session_for(conn, session_id, request.app[CLOCK]())
        except UnknownOperator:
            return None


@web.middleware
async def operator_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/v1/") or request.path.startswith("/api/v1/insurer"):
        return await handler(request)
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "Authorization: Bearer <operator token>")
        async with request.app[DB].acquire() as conn:
            try:
                request[OPERATOR] = await operator_for_token(conn, token.strip())
            except UnknownOperator:
                raise ApiError(401, "unauthorized", "unknown or revoked token") from None
        return await handler(request)
    session = await session_of(request)
    if session is None:
        raise ApiError(401, "unauthorized", "sign in, or send Authorization: Bearer <token>")
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise ApiError(403, "csrf", f"{CSRF_HEADER}: missing or wrong")
    request[OPERATOR] = session.operator
    return await handler(request)


def operator_of(request: web.Request) -> Operator:
    return request[OPERATOR]


def require_role(request: web.Request, roles: frozenset[str]) -> Operator:
    operator = operator_of(request)
    if operator.role not in roles:
        raise ApiError(403, "forbidden", f"role {operator.role} may not do this")
    return operator
