"""``/api/v1/insurer/claims``: first notice of loss, evidence packets, outcomes."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from telematics.api.body import json_object, optional_str, query_int, required_str
from telematics.api.errors import ApiError, not_found
from telematics.api.keys import CLOCK, DB
from telematics.insurer import packet as packets
from telematics.insurer.api.common import coverage_of, json_response
from telematics.insurer.api.gate import identity_of, note_of, requires
from telematics.insurer.api.params import invalid, parse_time
from telematics.insurer.model import Coverage
from telematics.insurer.store import claims as store
from telematics.insurer.store import webhooks
from telematics.insurer.store.evidence import evidence_rows

OUTCOMES = ("paid", "partially_paid", "denied", "withdrawn")


def _coordinate(body: dict[str, Any], name: str, bound: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(name, "must be a number")
    if not math.isfinite(value) or abs(value) > bound:
        raise invalid(name, f"must be between -{bound:g} and {bound:g}")
    return float(value)


def _optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(name, "must be true, false or null")
    return value


def _new_claim(body: dict[str, Any]) -> store.NewClaim:
    occurred = body.get("occurred_at")
    if not isinstance(occurred, str):
        raise invalid("occurred_at", "required, an ISO 8601 date-time with offset")
    lat, lon = _coordinate(body, "lat", 90), _coordinate(body, "lon", 180)
    if (lat is None) != (lon is None):
        raise invalid("lat", "lat and lon go together")
    return store.NewClaim(
        vehicle_id=required_str(body, "vehicle_id", 64),
        occurred_at=parse_time("occurred_at", occurred),
        lat=lat,
        lon=lon,
        place=optional_str(body, "place", 500),
        description=required_str(body, "description", 5000),
        reference=optional_str(body, "reference", 200),
    )


def _span(cov: Coverage, vehicle_id: str, at: datetime) -> tuple[datetime, datetime]:
    """±15 minutes around ``at``, within the policies that cover the vehicle at ``at``."""
    windows = [w for w in cov.windows.get(vehicle_id, ()) if w.start <= at < w.end]
    lo = max(at - packets.EVIDENCE_SPAN, min(w.start for w in windows))
    hi = min(at + packets.EVIDENCE_SPAN, max(w.end for w in windows))
    return lo, hi


async def _build_evidence(
    conn: asyncpg.Connection,
    claim: store.Claim,
    evidence: Coverage,
    locations: Coverage,
    now: datetime,
) -> tuple[dict[str, Any], str]:
    span = _span(evidence, claim.vehicle_id, claim.occurred_at)
    rows = await evidence_rows(conn, claim.vehicle_id, *span)
    packet = packets.build_packet(
        claim.to_dict() | {"occurred_at": claim.occurred_at},
        rows,
        span=span,
        locations=locations.covers(claim.vehicle_id, claim.occurred_at),
        built_at=now,
    )
    data = packets.dumps(packet)
    digest = hashlib.sha256(data).hexdigest()
    await store.save_evidence(conn, claim.id, now, data, digest)
    return packet, digest


def _claim_json(claim: store.Claim, sha256: str | None, built_at: str | None) -> dict[str, Any]:
    base = f"/api/v1/insurer/claims/{claim.id}"
    return {
        "claim": claim.to_dict(),
        "evidence": {
            "status": "ready" if sha256 else "unavailable",
            "sha256": sha256,
            "built_at": built_at,
            "packet_url": f"{base}/evidence",
            "archive_url": f"{base}/evidence.zip",
        },
    }


@requires("claims")
async def create_claim(request: web.Request) -> web.Response:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > 255:
        raise ApiError(422, "invalid_field", "Idempotency-Key: required header, 1–255 characters")
    body = await json_object(request)
    new = _new_claim(body)
    request_hash = hashlib.sha256(packets.dumps(body)).digest()
    identity = identity_of(request)
    now = request.app[CLOCK]()
    async with request.app[DB].acquire() as conn:
        evidence = await coverage_of(request, conn, "evidence")
        if not evidence.covers(new.vehicle_id, new.occurred_at):
            raise not_found("vehicle covered with evidence consent at occurred_at")
        locations = await coverage_of(request, conn, "locations")
        async with conn.transaction():
            claim, created = await store.insert_claim(
                conn, identity.insurer_id, key, request_hash, new
            )
            if created:
                _, digest = await _build_evidence(conn, claim, evidence, locations, now)
                await webhooks.enqueue(
                    conn,
                    identity.insurer_id,
                    "evidence.ready",
                    f"claim:{claim.id}",
                    claim.vehicle_id,
                    {
                        "type": "evidence.ready",
                        "timestamp": now.isoformat(),
                        "data": {**_claim_json(claim, digest, now.isoformat())},
                    },
                )
        stored = await store.get_evidence(conn, claim.id)
    note_of(request).saw([claim.vehicle_id], 1)
    sha = stored[1] if stored else None
    built = stored[2].isoformat() if stored else None
    response = json_response(_claim_json(claim, sha, built), status=201 if created else 200)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def _claim_in_scope(
    request: web.Request, conn: asyncpg.Connection
) -> tuple[store.Claim, Coverage]:
    claim = await store.get_claim(
        conn, identity_of(request).insurer_id, request.match_info["claim_id"]
    )
    if claim is None:
        raise not_found("claim")
    evidence = await coverage_of(request, conn, "evidence")
    if not evidence.covers(claim.vehicle_id, claim.occurred_at):
        raise not_found("claim")  # the policy lapsed or was revoked
    return claim, evidence


@requires("claims")
async def list_claims(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, 1000)
    async with request.app[DB].acquire() as conn:
        found = await store.list_claims(conn, identity_of(request).insurer_id, limit)
        evidence = await coverage_of(request, conn, "evidence")
    visible = [c for c in found if evidence.covers(c.vehicle_id, c.occurred_at)]
    note_of(request).saw([c.vehicle_id for c in visible], len(visible))
    return json_response({"claims": [c.to_dict() for c in visible]})


@requires("claims")
async def get_claim(request: web.Request) -> web.Response:
    async with request.app[DB].acquire() as conn:
        claim, _ = await _claim_in_scope(request, conn)
        stored = await store.get_evidence(conn, claim.id)
    note_of(request).saw([claim.vehicle_id], 1)
    return json_response(
        _claim_json(claim, stored[1] if stored else None, stored[2].isoformat() if stored else None)
    )


@requires("claims")
async def get_evidence(request: web.Request) -> web.Response:
    async with request.app[DB].acquire() as conn:
        claim, _ = await _claim_in_scope(request, conn)
        stored = await store.get_evidence(conn, claim.id)
    if stored is None:
        raise not_found("evidence")
    note_of(request).saw([claim.vehicle_id], 1)
    return web.Response(
        body=stored[0].encode(),
        content_type="application/json",
        headers={"X-Evidence-SHA256": stored[1]},
    )


@requires("claims")
async def get_archive(request: web.Request) -> web.Response:
    async with request.app[DB].acquire() as conn:
        claim, _ = await _claim_in_scope(request, conn)
        stored = await store.get_evidence(conn, claim.id)
    if stored is None:
        raise not_found("evidence")
    note_of(request).saw([claim.vehicle_id], 1)
    data = packets.archive(claim.to_dict(), orjson.loads(stored[0]))
    return web.Response(
        body=data,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="evidence-{claim.id}.zip"'},
    )


def _outcome(body: dict[str, Any]) -> store.Outcome:
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        raise invalid("outcome", f"required, one of {', '.join(OUTCOMES)}")
    raw_amount = body.get("loss_amount")
    amount: Decimal | None = None
    if raw_amount is not None:
        if isinstance(raw_amount, bool) or not isinstance(raw_amount, (int, float, str)):
            raise invalid("loss_amount", "must be a number ≥ 0")
        try:
            amount = Decimal(str(raw_amount))
        except InvalidOperation:
            raise invalid("loss_amount", "must be a number ≥ 0") from None
        if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
            raise invalid("loss_amount", "must be a number ≥ 0 and below 10^12")
        amount = amount.quantize(Decimal("0.01"))
    currency = optional_str(body, "currency", 3)
    if currency is not None and (
        len(currency) != 3 or not currency.isascii() or not currency.isupper()
    ):
        raise invalid("currency", "an ISO 4217 code such as CNY")
    if amount is not None and currency is None:
        raise invalid("currency", "required with loss_amount")
    return store.Outcome(
        outcome,
        _optional_bool(body, "at_fault"),
        amount,
        currency,
        _optional_bool(body, "injuries"),
    )


@requires("claims")
async def post_outcome(request: web.Request) -> web.Response:
    body = await json_object(request)
    outcome = _outcome(body)
    async with request.app[DB].acquire() as conn:
        claim, _ = await _claim_in_scope(request, conn)
        row = await store.record_outcome(conn, claim, outcome, packets.EVIDENCE_SPAN)
    note_of(request).saw([claim.vehicle_id], 1)
    return json_response({"outcome": row})
