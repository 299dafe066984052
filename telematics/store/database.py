"""Where the database is: an external URL, or an embedded PostgreSQL under ``data_dir``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from telematics.config import Settings
from telematics.errors import StorageError
from telematics.store.migrate import migrate

T = TypeVar("T")

log = logging.getLogger(__name__)

EMBEDDED_DB = "telematics"
_servers: dict[Path, Any] = {}  # keep pgserver handles alive for the process's lifetime


def start_embedded(data_dir: Path, cleanup_mode: str | None = "stop") -> Any:
    """Start (or join) the embedded PostgreSQL in ``data_dir/pg``; returns the pgserver handle."""
    import pgserver  # imported lazily: external-database deployments never need it

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pg").resolve()
    if pgdata not in _servers:
        server = pgserver.get_server(pgdata, cleanup_mode=cleanup_mode)
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB}';")
        if "1 row" not in exists:
            server.psql(f"CREATE DATABASE {EMBEDDED_DB};")
        _servers[pgdata] = server
    return _servers[pgdata]


def database_url(settings: Settings) -> str:
    """The URL every component connects to; starts the embedded server when none is set."""
    if settings.database_url:
        return settings.database_url
    server = start_embedded(settings.data_dir)
    url: str = server.get_uri(EMBEDDED_DB)
    log.info("embedded PostgreSQL at %s", url)
    return url


async def create_pool(url: str, size: int = 4) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=size, command_timeout=60)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


def run_with_db(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """For command-line tools: run ``work`` on one connection to a migrated database."""

    async def run() -> T:
        conn = await asyncpg.connect(database_url(settings))
        try:
            await migrate(conn)
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())
