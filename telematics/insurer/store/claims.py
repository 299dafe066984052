"""Claims (first notice of loss), their frozen evidence and outcomes (training labels)."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from telematics.insurer.model import InsurerError

_COLS = """id, insurer_id, vehicle_id, occurred_at, lat, lon, place, description, reference,
           created_at"""


@dataclass(frozen=True, slots=True)
class Claim:
    id: str
    insurer_id: str
    vehicle_id: str
    occurred_at: datetime
    lat: float | None
    lon: float | None
    place: str | None
    description: str
    reference: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("occurred_at", "created_at"):
            out[key] = out[key].isoformat()
        return out


@dataclass(frozen=True, slots=True)
class NewClaim:
    vehicle_id: str
    occurred_at: datetime
    lat: float | None
    lon: float | None
    place: str | None
    description: str
    reference: str | None


class IdempotencyConflict(InsurerError):
    """The Idempotency-Key was used before for a different request."""


async def insert_claim(
    conn: asyncpg.Connection, insurer_id: str, key: str, request_hash: bytes, new: NewClaim
) -> tuple[Claim, bool]:
    """The claim for (insurer, key): created now (True) or the one created before (False).

    A concurrent POST with the same key waits for the first one's transaction and then
    finds its row. Call inside a transaction that also stores the evidence."""
    claim_id = "clm_" + secrets.token_hex(10)
    row = await conn.fetchrow(
        f"""INSERT INTO claims (id, insurer_id, idempotency_key, request_hash, vehicle_id,
                               occurred_at, lat, lon, place, description, reference)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (insurer_id, idempotency_key) DO NOTHING
            RETURNING {_COLS}""",
        claim_id,
        insurer_id,
        key,
        request_hash,
        new.vehicle_id,
        new.occurred_at,
        new.lat,
        new.lon,
        new.place,
        new.description,
        new.reference,
    )
    if row is not None:
        return Claim(**dict(row)), True
    old = await conn.fetchrow(
        f"""SELECT {_COLS}, request_hash FROM claims
            WHERE insurer_id = $1 AND idempotency_key = $2""",
        insurer_id,
        key,
    )
    assert old is not None  # the conflicting row is committed by now
    if bytes(old["request_hash"]) != request_hash:
        raise IdempotencyConflict(key)
    values = dict(old)
    del values["request_hash"]
    return Claim(**values), False


async def get_claim(conn: asyncpg.Connection, insurer_id: str, claim_id: str) -> Claim | None:
    row = await conn.fetchrow(
        f"SELECT {_COLS} FROM claims WHERE id = $1 AND insurer_id = $2", claim_id, insurer_id
    )
    return None if row is None else Claim(**dict(row))


async def list_claims(conn: asyncpg.Connection, insurer_id: str, limit: int) -> list[Claim]:
    rows = await conn.fetch(
        f"SELECT {_COLS} FROM claims WHERE insurer_id = $1 ORDER BY created_at DESC, id LIMIT $2",
        insurer_id,
        limit,
    )
    return [Claim(**dict(r)) for r in rows]


async def save_evidence(
    conn: asyncpg.Connection, claim_id: str, built_at: datetime, packet_json: bytes, sha256: str
) -> None:
    await conn.execute(
        """INSERT INTO claim_evidence (claim_id, built_at, packet, sha256)
           VALUES ($1, $2, $3::text::jsonb, $4) ON CONFLICT (claim_id) DO NOTHING""",
        claim_id,
        built_at,
        packet_json.decode(),
        sha256,
    )


async def get_evidence(conn: asyncpg.Connection, claim_id: str) -> tuple[str, str, datetime] | None:
    """(packet JSON, sha256, built_at) of a claim, if built."""
    row = await conn.fetchrow(
        "SELECT packet::text AS packet, sha256, built_at FROM claim_evidence WHERE claim_id = $1",
        claim_id,
    )
    return None if row is None else (row["packet"], row["sha256"], row["built_at"])


@dataclass(frozen=True, slots=True)
class Outcome:
    outcome: str
    at_fault: bool | None
    loss_amount: Decimal | None
    currency: str | None
    injuries: bool | None


async def record_outcome(
    conn: asyncpg.Connection, claim: Claim, outcome: Outcome, span: timedelta
) -> dict[str, Any]:
    """Store (or replace) the claim's outcome as a training label; returns the row."""
    row = await conn.fetchrow(
        """INSERT INTO claim_outcomes (claim_id, insurer_id, vehicle_id, occurred_at, outcome,
                                       at_fault, loss_amount, currency, injuries, alarm_ids)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                   ARRAY(SELECT a.id FROM alarms a
                         WHERE a.vehicle_id = $3 AND a.first_ts < $4::timestamptz + $10::interval
                           AND a.last_ts >= $4::timestamptz - $10::interval
                         ORDER BY a.first_ts, a.id))
           ON CONFLICT (claim_id) DO UPDATE SET
               outcome = EXCLUDED.outcome, at_fault = EXCLUDED.at_fault,
               loss_amount = EXCLUDED.loss_amount, currency = EXCLUDED.currency,
               injuries = EXCLUDED.injuries, alarm_ids = EXCLUDED.alarm_ids, updated_at = now()
           RETURNING claim_id, vehicle_id, occurred_at, outcome, at_fault, loss_amount,
                     currency, injuries, alarm_ids, recorded_at, updated_at""",
        claim.id,
        claim.insurer_id,
        claim.vehicle_id,
        claim.occurred_at,
        outcome.outcome,
        outcome.at_fault,
        outcome.loss_amount,
        outcome.currency,
        outcome.injuries,
        span,
    )
    assert row is not None
    out = dict(row)
    for key in ("occurred_at", "recorded_at", "updated_at"):
        out[key] = out[key].isoformat()
    out["loss_amount"] = None if out["loss_amount"] is None else str(out["loss_amount"])
    return out
