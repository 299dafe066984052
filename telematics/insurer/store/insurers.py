"""Insurers, their policies (coverage and consent) and API keys."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telematics.ids import is_printable_id
from telematics.insurer.model import (
    CONSENTS,
    KEY_SCOPES,
    Coverage,
    InsurerError,
    KeyIdentity,
    UnknownInsurer,
)
from telematics.protocol.limits import MAX_ID_LEN
from telematics.store.registry import token_hash

KEY_PREFIX = "ik_"  # tells an insurer key from an operator token at a glance


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    insurer_id: str
    policy_number: str | None
    fleet_id: str | None
    vehicle_id: str | None
    starts_at: datetime
    ends_at: datetime
    consent: tuple[str, ...]
    revoked_at: datetime | None


async def add_insurer(conn: asyncpg.Connection, insurer_id: str, name: str) -> None:
    if not insurer_id.strip() or not name.strip():
        raise InsurerError("insurer: id and name must not be empty")
    # the id goes into API keys' audit trail and every URL the insurer is shown under
    if not is_printable_id(insurer_id):
        raise InsurerError(f"insurer: id must be 1–{MAX_ID_LEN} printable characters")
    if len(name) > 200:
        raise InsurerError("insurer: name must be at most 200 characters")
    try:
        await conn.execute("INSERT INTO insurers (id, name) VALUES ($1, $2)", insurer_id, name)
    except asyncpg.UniqueViolationError:
        raise InsurerError(f"insurer {insurer_id!r} already exists") from None


async def disable_insurer(conn: asyncpg.Connection, insurer_id: str) -> None:
    async with conn.transaction():
        status: str = await conn.execute(
            "UPDATE insurers SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL",
            insurer_id,
        )
        if status.endswith(" 0"):
            raise UnknownInsurer(f"no insurer {insurer_id!r}")
        await conn.execute(
            """UPDATE insurer_api_keys SET revoked_at = now()
               WHERE insurer_id = $1 AND revoked_at IS NULL""",
            insurer_id,
        )


async def issue_key(
    conn: asyncpg.Connection, insurer_id: str, scopes: Sequence[str] | None = None
) -> str:
    """A new API key for the insurer (every scope unless given); returns it, shown once."""
    chosen = sorted(set(scopes)) if scopes else list(KEY_SCOPES)
    unknown = sorted(set(chosen) - set(KEY_SCOPES))
    if unknown:
        raise InsurerError(f"scope: unknown {', '.join(unknown)} (one of {', '.join(KEY_SCOPES)})")
    exists = await conn.fetchval(
        "SELECT true FROM insurers WHERE id = $1 AND disabled_at IS NULL", insurer_id
    )
    if not exists:
        raise UnknownInsurer(f"no insurer {insurer_id!r}")
    key = new_key()
    await conn.execute(
        """INSERT INTO insurer_api_keys (key_hash, insurer_id, prefix, scopes)
           VALUES ($1, $2, $3, $4)""",
        token_hash(key),
        insurer_id,
        key[:10],
        chosen,
    )
    return key


async def revoke_key(conn: asyncpg.Connection, prefix: str) -> int:
    status: str = await conn.execute(
        "UPDATE insurer_api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL",
        prefix,
    )
    return int(status.rsplit(" ", 1)[-1])


async def identity_for_key(conn: asyncpg.Connection, key: str) -> KeyIdentity:
    row = await conn.fetchrow(
        """SELECT k.insurer_id, k.prefix, k.scopes FROM insurer_api_keys k
           JOIN insurers i ON i.id = k.insurer_id
           WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND i.disabled_at IS NULL""",
        token_hash(key),
    )
    if row is None:
        raise UnknownInsurer("unknown or revoked API key")
    return KeyIdentity(row["insurer_id"], row["prefix"], frozenset(row["scopes"]))


async def add_policy(
    conn: asyncpg.Connection,
    insurer_id: str,
    *,
    starts_at: datetime,
    ends_at: datetime,
    consent: Sequence[str],
    fleet_id: str | None = None,
    vehicle_id: str | None = None,
    policy_number: str | None = None,
) -> str:
    """Cover a fleet or one vehicle for ``[starts_at, ends_at)``; returns the policy id."""
    if (fleet_id is None) == (vehicle_id is None):
        raise InsurerError("policy: give exactly one of a fleet or a vehicle")
    if starts_at.tzinfo is None or ends_at.tzinfo is None or ends_at <= starts_at:
        raise InsurerError("policy: the period must be timezone-aware and end after it starts")
    unknown = sorted(set(consent) - set(CONSENTS))
    if unknown or not consent:
        raise InsurerError(f"consent: one or more of {', '.join(CONSENTS)}")
    policy_id = "pol_" + secrets.token_hex(8)
    try:
        await conn.execute(
            """INSERT INTO insurer_policies (id, insurer_id, policy_number, fleet_id, vehicle_id,
                                             starts_at, ends_at, consent)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            policy_id,
            insurer_id,
            policy_number,
            fleet_id,
            vehicle_id,
            starts_at,
            ends_at,
            sorted(set(consent)),
        )
    except asyncpg.ForeignKeyViolationError as exc:
        raise InsurerError(f"policy: no such insurer, fleet or vehicle ({exc.detail})") from None
    return policy_id


async def revoke_policy(conn: asyncpg.Connection, policy_id: str) -> None:
    status: str = await conn.execute(
        "UPDATE insurer_policies SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        policy_id,
    )
    if status.endswith(" 0"):
        raise InsurerError(f"no active policy {policy_id!r}")


async def list_policies(conn: asyncpg.Connection, insurer_id: str | None = None) -> list[Policy]:
    rows = await conn.fetch(
        """SELECT id, insurer_id, policy_number, fleet_id, vehicle_id, starts_at, ends_at,
                  consent, revoked_at FROM insurer_policies
           WHERE $1::text IS NULL OR insurer_id = $1 ORDER BY insurer_id, starts_at, id""",
        insurer_id,
    )
    return [Policy(**{**dict(r), "consent": tuple(r["consent"])}) for r in rows]


async def list_insurers(conn: asyncpg.Connection) -> list[tuple[str, str, bool]]:
    rows = await conn.fetch(
        "SELECT id, name, disabled_at IS NULL AS enabled FROM insurers ORDER BY id"
    )
    return [(r["id"], r["name"], r["enabled"]) for r in rows]


async def coverage(
    conn: asyncpg.Connection, insurer_id: str, scope: str, now: datetime
) -> Coverage:
    """The vehicles (and periods) ``insurer_id`` may see under ``scope`` at ``now``."""
    rows = await conn.fetch(
        "SELECT vehicle_id, covered_from, covered_until FROM insurer_coverage($1, $2, $3)",
        insurer_id,
        scope,
        now,
    )
    return Coverage.of(scope, ((r[0], r[1], r[2]) for r in rows))
