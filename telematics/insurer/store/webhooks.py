"""Webhook endpoints, the delivery outbox and its log.

The delivery worker claims due rows with ``FOR UPDATE SKIP LOCKED`` and leases them
(``next_attempt_at`` moves ``lease`` ahead) in one short transaction, sends without
holding locks, then records the answer. A worker that dies mid-send leaves the lease to
expire and the row is sent again: at least once, always with the same ``webhook-id``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from telematics.insurer.signing import new_secret

_EP_COLS = """id, insurer_id, url, event_types, description, created_at, disabled_at,
              disabled_reason, previous_expires_at"""


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    webhook_id: str
    endpoint_id: str
    url: str
    payload: bytes
    secrets: tuple[str, ...]  # the current secret, then a rotated one still valid
    attempts: int
    retry_until: datetime


def _endpoint(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["event_types"] = list(out["event_types"])
    for key in ("created_at", "disabled_at", "previous_expires_at"):
        out[key] = None if out[key] is None else out[key].isoformat()
    out["enabled"] = out["disabled_at"] is None
    return out


async def add_endpoint(
    conn: asyncpg.Connection,
    insurer_id: str,
    url: str,
    event_types: Sequence[str],
    description: str | None,
) -> tuple[dict[str, Any], str]:
    """A new endpoint and its secret (returned once)."""
    secret = new_secret()
    row = await conn.fetchrow(
        f"""INSERT INTO webhook_endpoints (id, insurer_id, url, event_types, secret, description)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_EP_COLS}""",
        "ep_" + secrets.token_hex(8),
        insurer_id,
        url,
        sorted(set(event_types)),
        secret,
        description,
    )
    assert row is not None
    return _endpoint(row), secret


async def list_endpoints(conn: asyncpg.Connection, insurer_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE insurer_id = $1 ORDER BY created_at, id",
        insurer_id,
    )
    return [_endpoint(r) for r in rows]


async def get_endpoint(
    conn: asyncpg.Connection, insurer_id: str, endpoint_id: str
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE id = $1 AND insurer_id = $2",
        endpoint_id,
        insurer_id,
    )
    return None if row is None else _endpoint(row)


async def set_enabled(
    conn: asyncpg.Connection, insurer_id: str, endpoint_id: str, enabled: bool, reason: str
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""UPDATE webhook_endpoints
            SET disabled_at = CASE WHEN $3 THEN NULL ELSE coalesce(disabled_at, now()) END,
                disabled_reason = CASE WHEN $3 THEN NULL ELSE $4 END
            WHERE id = $1 AND insurer_id = $2 RETURNING {_EP_COLS}""",
        endpoint_id,
        insurer_id,
        enabled,
        reason,
    )
    return None if row is None else _endpoint(row)


async def rotate_secret(
    conn: asyncpg.Connection, insurer_id: str, endpoint_id: str, keep_previous: timedelta
) -> str | None:
    """A new secret; the current one keeps signing alongside until ``keep_previous`` ends."""
    secret = new_secret()
    status: str = await conn.execute(
        """UPDATE webhook_endpoints
           SET previous_secret = secret, previous_expires_at = now() + $3::interval, secret = $4
           WHERE id = $1 AND insurer_id = $2""",
        endpoint_id,
        insurer_id,
        keep_previous,
        secret,
    )
    return None if status.endswith(" 0") else secret


async def enqueue(
    conn: asyncpg.Connection,
    insurer_id: str,
    event_type: str,
    source: str,
    vehicle_id: str | None,
    payload: dict[str, Any],
) -> int:
    """Messages for every enabled endpoint of the insurer subscribed to ``event_type``
    (inside the caller's transaction); returns how many."""
    status: str = await conn.execute(
        """INSERT INTO webhook_deliveries (webhook_id, endpoint_id, insurer_id, event_type,
                                           source, vehicle_id, payload)
           SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), e.id, e.insurer_id, $2,
                  $3, $4, $5::text::jsonb
           FROM webhook_endpoints e
           WHERE e.insurer_id = $1 AND e.disabled_at IS NULL AND $2 = ANY (e.event_types)
           ON CONFLICT DO NOTHING""",
        insurer_id,
        event_type,
        source,
        vehicle_id,
        orjson.dumps(payload).decode(),
    )
    return int(status.rsplit(" ", 1)[-1])


async def list_deliveries(
    conn: asyncpg.Connection, endpoint_id: str, status: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT d.id, d.webhook_id, d.event_type, d.status, d.attempts, d.created_at,
                  d.next_attempt_at, d.retry_until, d.delivered_at, d.last_status, d.last_error,
                  d.payload::text AS payload,
                  coalesce((SELECT jsonb_agg(jsonb_build_object(
                                'at', a.at, 'status_code', a.status_code, 'error', a.error,
                                'duration_ms', a.duration_ms) ORDER BY a.id)
                            FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]')::text
                      AS log
           FROM webhook_deliveries d
           WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2)
           ORDER BY d.id DESC LIMIT $3""",
        endpoint_id,
        status,
        limit,
    )
    out = []
    for r in rows:
        row = dict(r)
        row["payload"] = orjson.loads(row["payload"])
        row["log"] = orjson.loads(row["log"])
        for key in ("created_at", "next_attempt_at", "retry_until", "delivered_at"):
            row[key] = None if row[key] is None else row[key].isoformat()
        out.append(row)
    return out


async def redeliver(
    conn: asyncpg.Connection, endpoint_id: str, delivery_id: int, max_age: timedelta
) -> bool:
    """Send a message again now (same webhook-id), with a fresh retry period."""
    status: str = await conn.execute(
        """UPDATE webhook_deliveries
           SET status = 'pending', next_attempt_at = now(), retry_until = now() + $3::interval
           WHERE id = $1 AND endpoint_id = $2""",
        delivery_id,
        endpoint_id,
        max_age,
    )
    return not status.endswith(" 0")


async def claim_due(conn: asyncpg.Connection, limit: int, lease: timedelta) -> list[Due]:
    rows = await conn.fetch(
        """WITH due AS (
               SELECT d.id FROM webhook_deliveries d
               JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.disabled_at IS NULL
               WHERE d.status = 'pending' AND d.next_attempt_at <= now()
               ORDER BY d.next_attempt_at, d.id LIMIT $1
               FOR UPDATE OF d SKIP LOCKED)
           UPDATE webhook_deliveries d
           SET next_attempt_at = now() + $2::interval, attempts = d.attempts + 1
           FROM due, webhook_endpoints e
           WHERE d.id = due.id AND e.id = d.endpoint_id
           RETURNING d.id, d.webhook_id, d.endpoint_id, e.url, d.payload::text AS payload,
                     e.secret, CASE WHEN e.previous_expires_at > now()
                                    THEN e.previous_secret END AS previous_secret,
                     d.attempts, d.retry_until""",
        limit,
        lease,
    )
    return [
        Due(
            r["id"],
            r["webhook_id"],
            r["endpoint_id"],
            r["url"],
            r["payload"].encode(),
            (r["secret"],) if r["previous_secret"] is None else (r["secret"], r["previous_secret"]),
            r["attempts"],
            r["retry_until"],
        )
        for r in rows
    ]


async def record_attempt(
    conn: asyncpg.Connection,
    due: Due,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    *,
    delivered: bool,
    gone: bool,
    retry_at: datetime,
) -> None:
    """The attempt's log row and the message's new state, in one transaction. ``gone``
    (HTTP 410) disables the endpoint and parks its pending messages."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO webhook_attempts (delivery_id, status_code, error, duration_ms)
               VALUES ($1, $2, $3, $4)""",
            due.id,
            status_code,
            error,
            duration_ms,
        )
        if delivered:
            await conn.execute(
                """UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(),
                          last_status = $2, last_error = NULL WHERE id = $1""",
                due.id,
                status_code,
            )
        elif gone:
            await conn.execute(
                """UPDATE webhook_endpoints SET disabled_at = now(),
                          disabled_reason = 'receiver answered 410 Gone'
                   WHERE id = $1 AND disabled_at IS NULL""",
                due.endpoint_id,
            )
            await conn.execute(
                """UPDATE webhook_deliveries SET status = 'disabled', last_status = $3,
                          last_error = $4
                   WHERE endpoint_id = $1 AND (status = 'pending' OR id = $2)""",
                due.endpoint_id,
                due.id,
                status_code,
                error,
            )
        else:
            await conn.execute(
                """UPDATE webhook_deliveries
                   SET status = CASE WHEN $2 > retry_until THEN 'failed' ELSE 'pending' END,
                       next_attempt_at = $2, last_status = $3, last_error = $4
                   WHERE id = $1""",
                due.id,
                retry_at,
                status_code,
                error,
            )
