"""Who is asking: a bearer token of an operator (``telematics operator add``), and roles."""

from __future__ import annotations

from aiohttp import web

from telematics.api.errors import ApiError, Handler
from telematics.api.keys import DB, OPERATOR
from telematics.store.operators import Operator, UnknownOperator, operator_for_token

#: Roles allowed to change zones (and, later, the policies).
ZONE_EDITORS = frozenset({"safety_manager", "admin"})


@web.middleware
async def operator_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "Authorization: Bearer <operator token> required")
    async with request.app[DB].acquire() as conn:
        try:
            operator = await operator_for_token(conn, token.strip())
        except UnknownOperator:
            raise ApiError(401, "unauthorized", "unknown or revoked token") from None
    request[OPERATOR] = operator
    return await handler(request)


def operator_of(request: web.Request) -> Operator:
    return request[OPERATOR]


def require_role(request: web.Request, roles: frozenset[str]) -> Operator:
    operator = operator_of(request)
    if operator.role not in roles:
        raise ApiError(403, "forbidden", f"role {operator.role} may not do this")
    return operator
