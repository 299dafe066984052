"""Vehicles, fleets and device tokens: registration, revocation, authentication."""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from telematics.errors import TelematicsError, UnknownVehicle, shown
from telematics.fleet import CLASS_PROFILES, VEHICLE_CLASSES, Vehicle
from telematics.ids import is_printable_id
from telematics.protocol.limits import MAX_ID_LEN


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class NewVehicle:
    id: str
    fleet_id: str
    vehicle_class: str
    plate: str | None = None


MAX_PLATE_LEN = 32


def check_new_vehicle(v: NewVehicle) -> None:
    if not is_printable_id(v.id) or "," in v.id:
        raise TelematicsError(
            f"vehicle id {shown(v.id)}: 1–{MAX_ID_LEN} printable characters, no commas"
        )
    if v.vehicle_class not in VEHICLE_CLASSES:
        raise TelematicsError(
            f"vehicle {v.id}: class must be one of {', '.join(VEHICLE_CLASSES)},"
            f" got {shown(v.vehicle_class)}"
        )
    if not v.fleet_id:
        raise TelematicsError(f"vehicle {v.id}: fleet is required")
    if not is_printable_id(v.fleet_id):
        raise TelematicsError(
            f"vehicle {v.id}: fleet {shown(v.fleet_id)}: 1–{MAX_ID_LEN} printable characters"
        )
    if v.plate is not None and (len(v.plate) > MAX_PLATE_LEN or not v.plate.isprintable()):
        raise TelematicsError(
            f"vehicle {v.id}: plate {shown(v.plate)}: at most {MAX_PLATE_LEN} printable characters"
        )


async def add_vehicles(
    conn: asyncpg.Connection, vehicles: Iterable[NewVehicle]
) -> list[tuple[str, str]]:
    """Register vehicles (creating their fleets); returns ``(id, token)`` per vehicle."""
    batch = list(vehicles)
    for v in batch:
        check_new_vehicle(v)
    ids = [v.id for v in batch]
    if len(set(ids)) != len(ids):
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)[:5]
        raise TelematicsError(f"duplicate vehicle ids in input: {', '.join(twice)}")
    tokens = [new_token() for _ in batch]
    async with conn.transaction():
        existing = await conn.fetch("SELECT id FROM vehicles WHERE id = ANY($1::text[])", ids)
        if existing:
            shown = ", ".join(sorted(r["id"] for r in existing)[:5])
            raise TelematicsError(f"already registered: {shown}")
        await conn.execute(
            "INSERT INTO fleets (id, name) SELECT f, f FROM unnest($1::text[]) f"
            " ON CONFLICT DO NOTHING",
            sorted({v.fleet_id for v in batch}),
        )
        profiles = [CLASS_PROFILES[v.vehicle_class] for v in batch]
        await conn.copy_records_to_table(
            "vehicles",
            columns=("id", "fleet_id", "vehicle_class", "plate", "tire_layout", "placard_kpa"),
            records=[
                (v.id, v.fleet_id, v.vehicle_class, v.plate, list(p.tire_layout), p.placard_kpa)
                for v, p in zip(batch, profiles, strict=True)
            ],
        )
        await conn.copy_records_to_table(
            "device_tokens",
            columns=("token_hash", "vehicle_id"),
            records=[(token_hash(t), v.id) for v, t in zip(batch, tokens, strict=True)],
        )
        await conn.copy_records_to_table(
            "ingest_cursor", columns=("vehicle_id",), records=[(v.id,) for v in batch]
        )
    return list(zip(ids, tokens, strict=True))


async def revoke_vehicle(conn: asyncpg.Connection, vehicle_id: str) -> int:
    """Revoke every live token of a vehicle; returns how many were revoked."""
    if not await conn.fetchval("SELECT 1 FROM vehicles WHERE id = $1", vehicle_id):
        raise UnknownVehicle(f"no vehicle {vehicle_id!r}")
    status: str = await conn.execute(
        "UPDATE device_tokens SET revoked_at = now() WHERE vehicle_id = $1 AND revoked_at IS NULL",
        vehicle_id,
    )
    return int(status.split()[-1])


def _vehicle(row: Any) -> Vehicle:
    return Vehicle(
        row["id"],
        row["fleet_id"],
        row["vehicle_class"],
        row["plate"],
        tuple(row["tire_layout"]),
        float(row["placard_kpa"]),
    )


@dataclass(frozen=True)
class Login:
    """A unit's token checked, with what its connection needs to know up front."""

    vehicle: Vehicle
    last_seq: int
    has_active_alarms: bool  # else a fresh processor has nothing to restore
    has_pending_interventions: bool  # issued since ``pending_since``, not yet delivered


async def authenticate(
    conn: asyncpg.Connection, token: str, pending_since: datetime
) -> Login | None:
    """The vehicle of a live token, its stored ``last_seq``, or None.

    One round trip for the usual connect: whether there are open alarms or undelivered
    interventions to read rides along, so those queries run only when there are some.
    """
    row = await conn.fetchrow(
        """SELECT v.*, c.last_seq,
                  EXISTS (SELECT 1 FROM alarms a WHERE a.vehicle_id = v.id AND a.active)
                      AS has_active_alarms,
                  EXISTS (SELECT 1 FROM interventions i
                          WHERE i.vehicle_id = v.id AND i.status = 'issued'
                            AND i.issued_at >= $2) AS has_pending_interventions
           FROM device_tokens t
           JOIN vehicles v ON v.id = t.vehicle_id
           JOIN ingest_cursor c ON c.vehicle_id = v.id
           WHERE t.token_hash = $1 AND t.revoked_at IS NULL""",
        token_hash(token),
        pending_since,
    )
    if row is None:
        return None
    return Login(
        _vehicle(row),
        int(row["last_seq"]),
        row["has_active_alarms"],
        row["has_pending_interventions"],
    )


@dataclass(frozen=True)
class PendingIntervention:
    id: str
    alarm_id: str
    severity: str
    action: str
    message: str
    cause_seq: int
    cause_kind: str
    issued_at: datetime


async def pending_interventions(
    conn: asyncpg.Connection, vehicle_id: str, since: datetime
) -> list[PendingIntervention]:
    """Interventions not yet delivered to the cab, oldest first, to resend on connect."""
    rows = await conn.fetch(
        """SELECT id, alarm_id, severity, action, message, cause_seq, cause_kind, issued_at
           FROM interventions WHERE vehicle_id = $1 AND status = 'issued' AND issued_at >= $2
           ORDER BY issued_at""",
        vehicle_id,
        since,
    )
    return [PendingIntervention(**dict(r)) for r in rows]


async def issue_tokens(conn: asyncpg.Connection, vehicle_ids: list[str]) -> list[tuple[str, str]]:
    """Revoke the vehicles' live tokens and issue new ones (tokens are shown only once)."""
    tokens = [new_token() for _ in vehicle_ids]
    async with conn.transaction():
        await conn.execute(
            "UPDATE device_tokens SET revoked_at = now()"
            " WHERE vehicle_id = ANY($1::text[]) AND revoked_at IS NULL",
            vehicle_ids,
        )
        await conn.copy_records_to_table(
            "device_tokens",
            columns=("token_hash", "vehicle_id"),
            records=[(token_hash(t), v) for v, t in zip(vehicle_ids, tokens, strict=True)],
        )
    return list(zip(vehicle_ids, tokens, strict=True))
