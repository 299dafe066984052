"""Geofence zones in PostgreSQL: add, replace, soft-delete, list, and a cheap change marker.

Geometries are stored as GeoJSON (jsonb). Every change takes the next ``version`` under
one advisory lock, so ``zones_version`` only grows, in commit order, and a server polling
it never misses an edit (deletes keep their row, with a new version and ``deleted_at``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson

from telematics.geo.zones import (
    UnknownZone,
    Zone,
    ZoneError,
    geometry_from_geojson,
    geometry_to_geojson,
)

log = logging.getLogger(__name__)

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('telematics.zones'))"
_COLUMNS = "id, kind, name, geometry, speed_limit_kmh, dwell_s"


def _params(zone: Zone) -> tuple[Any, ...]:
    geometry = orjson.dumps(geometry_to_geojson(zone.geometry)).decode()
    return (zone.id, zone.kind, zone.name, geometry, zone.speed_limit_kmh, zone.dwell_s)


def _zone(row: Any) -> Zone:
    return Zone(
        row["id"],
        row["kind"],
        row["name"],
        geometry_from_geojson(orjson.loads(row["geometry"]), row["id"]),
        row["speed_limit_kmh"],
        row["dwell_s"],
    )


async def _write(conn: asyncpg.Connection, zone: Zone, mode: str) -> str:
    """``mode``: add | replace | upsert. Returns added | replaced | unchanged."""
    async with conn.transaction():
        await conn.execute(_LOCK)
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS}, deleted_at FROM zones WHERE id = $1", zone.id
        )
        live = row is not None and row["deleted_at"] is None
        if mode == "add" and live:
            raise ZoneError("id", "already exists", zone.id)
        if mode == "replace" and not live:
            raise UnknownZone(zone.id)
        if row is None:
            await conn.execute(
                f"INSERT INTO zones ({_COLUMNS}) VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
                *_params(zone),
            )
            return "added"
        if live and _zone(row) == zone:
            return "unchanged"  # no new version: pollers need not reload
        await conn.execute(
            """UPDATE zones SET kind = $2, name = $3, geometry = $4::jsonb, speed_limit_kmh = $5,
                   dwell_s = $6, version = nextval('zones_version_seq'), updated_at = now(),
                   deleted_at = NULL
               WHERE id = $1""",
            *_params(zone),
        )
        return "replaced" if live else "added"


async def add_zone(conn: asyncpg.Connection, zone: Zone) -> None:
    """Add a new zone (reusing the id of a deleted one is fine); a live id → ``ZoneError``."""
    await _write(conn, zone, "add")


async def replace_zone(conn: asyncpg.Connection, zone: Zone) -> None:
    """Replace a live zone with the same id; none → ``UnknownZone``."""
    await _write(conn, zone, "replace")


async def upsert_zone(conn: asyncpg.Connection, zone: Zone) -> str:
    """Add or replace; returns ``added``, ``replaced`` or ``unchanged``."""
    return await _write(conn, zone, "upsert")


async def import_zones(conn: asyncpg.Connection, zones: Iterable[Zone]) -> list[tuple[str, str]]:
    """Upsert many zones in one transaction; ``(id, added|replaced|unchanged)`` per zone."""
    batch = list(zones)
    ids = [z.id for z in batch]
    if len(set(ids)) != len(ids):
        raise ZoneError("id", "duplicate zone ids in input")
    async with conn.transaction():
        return [(z.id, await upsert_zone(conn, z)) for z in batch]


async def delete_zone(conn: asyncpg.Connection, zone_id: str) -> None:
    """Soft-delete a live zone (its row stays for the record); none → ``UnknownZone``."""
    async with conn.transaction():
        await conn.execute(_LOCK)
        status: str = await conn.execute(
            """UPDATE zones SET deleted_at = now(), updated_at = now(),
                   version = nextval('zones_version_seq')
               WHERE id = $1 AND deleted_at IS NULL""",
            zone_id,
        )
    if status.split()[-1] == "0":
        raise UnknownZone(zone_id)


def _zones(rows: Iterable[Any]) -> list[Zone]:
    zones: list[Zone] = []
    for row in rows:
        try:
            zones.append(_zone(row))
        except ZoneError as exc:  # edited by hand in SQL: skip it, keep the others working
            log.warning("skipping stored zone: %s", exc)
    return zones


async def get_zone(conn: asyncpg.Connection, zone_id: str) -> Zone | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM zones WHERE id = $1 AND deleted_at IS NULL", zone_id
    )
    found = _zones([row] if row is not None else [])
    return found[0] if found else None


async def list_zones(conn: asyncpg.Connection) -> list[Zone]:
    """Every live zone, by id."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM zones WHERE deleted_at IS NULL ORDER BY id")
    return _zones(rows)


async def zones_version(conn: asyncpg.Connection) -> str:
    """Changes whenever any zone is added, replaced or deleted (one index lookup)."""
    version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM zones")
    return str(version)


async def zones_snapshot(conn: asyncpg.Connection) -> tuple[str, list[Zone]]:
    """``(zones_version, list_zones)`` from one consistent snapshot, to build a ``ZoneIndex``."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        version = await zones_version(conn)
        zones = await list_zones(conn)
    return version, zones
