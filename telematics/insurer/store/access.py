"""The insurer access log: one row per request, with the vehicles whose data it returned."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


async def log_access(
    conn: asyncpg.Connection,
    insurer_id: str,
    key_prefix: str,
    method: str,
    path: str,
    query: str,
    status: int,
    vehicle_ids: Iterable[str],
    items: int,
) -> None:
    await conn.execute(
        """INSERT INTO insurer_access_log (insurer_id, key_prefix, method, path, query, status,
                                           vehicle_ids, items)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        insurer_id,
        key_prefix,
        method,
        path,
        query,
        status,
        sorted(set(vehicle_ids)),
        items,
    )
