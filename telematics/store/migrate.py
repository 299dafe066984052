"""Numbered SQL migrations from ``sql/``, each applied once and recorded."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_NAME = re.compile(r"(\d{3})_[a-z0-9_]+\.sql\Z")


def migration_files(sql_dir: Path = SQL_DIR) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return found


async def migrate(conn: asyncpg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations in order; returns the names applied. Safe to run concurrently."""
    applied: list[str] = []
    async with conn.transaction():
        # One migrator at a time across processes (several workers start together).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('telematics.migrate'))")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, path in migration_files(sql_dir):
            if version in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name
            )
            applied.append(path.name)
    return applied
