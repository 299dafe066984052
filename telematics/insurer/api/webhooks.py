"""``/api/v1/insurer/webhooks``: endpoints, secret rotation, delivery log, redelivery."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from telematics.api.body import json_object, optional_str, query_choice, query_int, required_str
from telematics.api.errors import not_found
from telematics.api.keys import DB
from telematics.insurer import egress
from telematics.insurer.api.common import json_response
from telematics.insurer.api.gate import identity_of, requires
from telematics.insurer.api.params import invalid
from telematics.insurer.model import EVENT_TYPES
from telematics.insurer.store import webhooks as store

DEFAULT_KEEP_PREVIOUS_S = 24 * 3600
MAX_KEEP_PREVIOUS_S = 7 * 24 * 3600
REDELIVER_MAX_AGE = timedelta(days=3)
STATUSES = ("pending", "delivered", "failed", "disabled")


def _url(body: dict[str, Any]) -> str:
    url = required_str(body, "url", 2000)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("url", "must be an absolute http(s) URL")
    if not egress.allow_private():
        if parts.scheme != "https":
            raise invalid("url", "must be https (the body carries driver and claim data)")
        try:
            egress.check_literal(parts.hostname)
        except egress.BlockedAddress:
            raise invalid("url", "must not point at a private or loopback address") from None
    return url


def _event_types(body: dict[str, Any]) -> list[str]:
    value = body.get("event_types")
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in EVENT_TYPES for v in value)
    ):
        raise invalid("event_types", f"a non-empty list of {', '.join(EVENT_TYPES)}")
    return [str(v) for v in value]


async def _endpoint(request: web.Request) -> dict[str, Any]:
    async with request.app[DB].acquire() as conn:
        found = await store.get_endpoint(
            conn, identity_of(request).insurer_id, request.match_info["endpoint_id"]
        )
    if found is None:
        raise not_found("webhook endpoint")
    return found


@requires("webhooks")
async def create_endpoint(request: web.Request) -> web.Response:
    body = await json_object(request)
    url, types = _url(body), _event_types(body)
    description = optional_str(body, "description", 500)
    async with request.app[DB].acquire() as conn:
        endpoint, secret = await store.add_endpoint(
            conn, identity_of(request).insurer_id, url, types, description
        )
    return json_response({"endpoint": endpoint, "secret": secret}, status=201)


@requires("webhooks")
async def list_endpoints(request: web.Request) -> web.Response:
    async with request.app[DB].acquire() as conn:
        found = await store.list_endpoints(conn, identity_of(request).insurer_id)
    return json_response({"endpoints": found})


@requires("webhooks")
async def get_endpoint(request: web.Request) -> web.Response:
    return json_response({"endpoint": await _endpoint(request)})


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    async with request.app[DB].acquire() as conn:
        found = await store.set_enabled(
            conn,
            identity_of(request).insurer_id,
            request.match_info["endpoint_id"],
            enabled,
            "disabled by the insurer",
        )
    if found is None:
        raise not_found("webhook endpoint")
    return json_response({"endpoint": found})


@requires("webhooks")
async def disable_endpoint(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


@requires("webhooks")
async def enable_endpoint(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


@requires("webhooks")
async def rotate_secret(request: web.Request) -> web.Response:
    body = await json_object(request)
    keep = body.get("keep_previous_s", DEFAULT_KEEP_PREVIOUS_S)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= MAX_KEEP_PREVIOUS_S:
        raise invalid("keep_previous_s", f"an integer between 0 and {MAX_KEEP_PREVIOUS_S}")
    async with request.app[DB].acquire() as conn:
        secret = await store.rotate_secret(
            conn,
            identity_of(request).insurer_id,
            request.match_info["endpoint_id"],
            timedelta(seconds=keep),
        )
    if secret is None:
        raise not_found("webhook endpoint")
    return json_response({"secret": secret, "previous_valid_s": keep})


@requires("webhooks")
async def list_deliveries(request: web.Request) -> web.Response:
    endpoint = await _endpoint(request)
    status = query_choice(request, "status", STATUSES)
    limit = query_int(request, "limit", 100, 1, 1000)
    async with request.app[DB].acquire() as conn:
        found = await store.list_deliveries(conn, endpoint["id"], status, limit)
    return json_response({"deliveries": found})


@requires("webhooks")
async def redeliver(request: web.Request) -> web.Response:
    endpoint = await _endpoint(request)
    try:
        delivery_id = int(request.match_info["delivery_id"])
    except ValueError:
        raise not_found("delivery") from None
    if not 0 < delivery_id < 1 << 63:
        raise not_found("delivery")
    async with request.app[DB].acquire() as conn:
        done = await store.redeliver(conn, endpoint["id"], delivery_id, REDELIVER_MAX_AGE)
    if not done:
        raise not_found("delivery")
    return json_response({"redelivery": "scheduled", "delivery_id": delivery_id}, status=202)
