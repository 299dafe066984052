"""Dispatch-centre operators and their API tokens: creation, revocation, authentication."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from telematics.errors import TelematicsError
from telematics.store.registry import new_token, token_hash

ROLES = ("dispatcher", "safety_manager", "admin")


class OperatorError(TelematicsError):
    """An operator request that cannot be done (unknown role, duplicate id …)."""


class UnknownOperator(OperatorError):
    """No such operator, or the token is unknown or revoked."""


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    role: str
    fleets: frozenset[str] | None  # None: every fleet

    def sees_fleet(self, fleet_id: str) -> bool:
        return self.fleets is None or fleet_id in self.fleets

    def fleet_filter(self) -> list[str] | None:
        """For queries: the fleets to restrict to, or None for no restriction."""
        return None if self.fleets is None else sorted(self.fleets)


async def add_operator(
    conn: asyncpg.Connection, operator_id: str, role: str, fleets: Sequence[str] | None
) -> None:
    """Create an operator (sign-in needs ``sessions.set_password``, scripts a token)."""
    if role not in ROLES:
        raise OperatorError(f"role: must be one of {', '.join(ROLES)}, got {role!r}")
    if not operator_id.strip():
        raise OperatorError("id: must not be empty")
    if fleets is not None:
        known = {
            r["id"]
            for r in await conn.fetch("SELECT id FROM fleets WHERE id = ANY($1)", list(fleets))
        }
        missing = sorted(set(fleets) - known)
        if missing:
            raise OperatorError(f"fleet: no such fleet {', '.join(missing)}")
    async with conn.transaction():
        try:
            await conn.execute(
                "INSERT INTO operators (id, role, fleets) VALUES ($1, $2, $3)",
                operator_id,
                role,
                None if fleets is None else sorted(set(fleets)),
            )
        except asyncpg.UniqueViolationError:
            raise OperatorError(f"id: user {operator_id!r} already exists") from None


async def new_operator_token(conn: asyncpg.Connection, operator_id: str) -> str:
    """Another token for an existing operator (e.g. for a script); returns it."""
    exists = await conn.fetchval(
        "SELECT true FROM operators WHERE id = $1 AND disabled_at IS NULL", operator_id
    )
    if not exists:
        raise UnknownOperator(f"no operator {operator_id!r}")
    return await _issue_token(conn, operator_id)


async def _issue_token(conn: asyncpg.Connection, operator_id: str) -> str:
    token = new_token()
    await conn.execute(
        "INSERT INTO operator_tokens (token_hash, operator_id) VALUES ($1, $2)",
        token_hash(token),
        operator_id,
    )
    return token


async def disable_operator(conn: asyncpg.Connection, operator_id: str) -> None:
    """Disable the operator, revoke every token and end every session of theirs."""
    async with conn.transaction():
        status: str = await conn.execute(
            "UPDATE operators SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL",
            operator_id,
        )
        if status.split()[-1] == "0":
            raise UnknownOperator(f"no operator {operator_id!r}")
        await conn.execute(
            """UPDATE operator_tokens SET revoked_at = now()
               WHERE operator_id = $1 AND revoked_at IS NULL""",
            operator_id,
        )
        await conn.execute("DELETE FROM operator_sessions WHERE operator_id = $1", operator_id)


async def operator_for_token(conn: asyncpg.Connection, token: str) -> Operator:
    row = await conn.fetchrow(
        """SELECT o.id, o.role, o.fleets FROM operator_tokens t
           JOIN operators o ON o.id = t.operator_id
           WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND o.disabled_at IS NULL""",
        token_hash(token),
    )
    if row is None:
        raise UnknownOperator("unknown or revoked token")
    fleets = row["fleets"]
    return Operator(row["id"], row["role"], None if fleets is None else frozenset(fleets))


async def list_operators(conn: asyncpg.Connection) -> list[tuple[Operator, bool]]:
    """Every operator, with whether they are enabled."""
    rows = await conn.fetch(
        "SELECT id, role, fleets, disabled_at IS NULL AS enabled FROM operators ORDER BY id"
    )
    return [
        (
            Operator(r["id"], r["role"], None if r["fleets"] is None else frozenset(r["fleets"])),
            r["enabled"],
        )
        for r in rows
    ]
