"""Dashboard sign-in: operators' passwords and server-side sessions.

The cookie carries a random session id; the database keeps only its SHA-256, the
operator and the session's CSRF token, which every state-changing request must echo.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from telematics.dashboard.passwords import hash_password, verify_password
from telematics.store.operators import Operator, UnknownOperator

SESSION_TTL = timedelta(hours=12)  # one dispatcher shift


@dataclass(frozen=True, slots=True)
class Session:
    id: str  # the cookie value; never stored
    operator: Operator
    csrf_token: str
    expires_at: datetime


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


async def set_password(conn: asyncpg.Connection, operator_id: str, password: str) -> None:
    status: str = await conn.execute(
        "UPDATE operators SET password_hash = $2 WHERE id = $1 AND disabled_at IS NULL",
        operator_id,
        hash_password(password),
    )
    if status.split()[-1] == "0":
        raise UnknownOperator(f"no operator {operator_id!r}")


async def sign_in(
    conn: asyncpg.Connection, operator_id: str, password: str, now: datetime
) -> Session:
    """A new session if the password is right; ``UnknownOperator`` otherwise (the same
    error for a wrong id and a wrong password)."""
    if "\x00" in operator_id:  # no id has one, and PostgreSQL text refuses it (an error)
        raise UnknownOperator("wrong user or password")
    row = await conn.fetchrow(
        """SELECT id, role, fleets, password_hash FROM operators
           WHERE id = $1 AND disabled_at IS NULL""",
        operator_id,
    )
    stored = None if row is None else row["password_hash"]
    if not verify_password(password, stored) or row is None:
        raise UnknownOperator("wrong user or password")
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = now + SESSION_TTL
    await conn.execute(
        """INSERT INTO operator_sessions (id_hash, operator_id, csrf_token, created_at, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        _hash(session_id),
        row["id"],
        csrf,
        now,
        expires,
    )
    fleets = row["fleets"]
    operator = Operator(row["id"], row["role"], None if fleets is None else frozenset(fleets))
    return Session(session_id, operator, csrf, expires)


async def session_for(conn: asyncpg.Connection, session_id: str, now: datetime) -> Session:
    row = await conn.fetchrow(
        """SELECT o.id, o.role, o.fleets, s.csrf_token, s.expires_at
           FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
           WHERE s.id_hash = $1 AND s.expires_at > $2 AND o.disabled_at IS NULL""",
        _hash(session_id),
        now,
    )
    if row is None:
        raise UnknownOperator("no such session, or it expired")
    fleets = row["fleets"]
    operator = Operator(row["id"], row["role"], None if fleets is None else frozenset(fleets))
    return Session(session_id, operator, row["csrf_token"], row["expires_at"])


async def sign_out(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("DELETE FROM operator_sessions WHERE id_hash = $1", _hash(session_id))
