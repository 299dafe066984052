"""Where the database is: an external URL, or an embedded PostgreSQL under ``data_dir``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from telematics.config import Settings
from telematics.errors import ConfigError, StorageError
from telematics.store.migrate import migrate

T = TypeVar("T")

log = logging.getLogger(__name__)

EMBEDDED_DB = "telematics"
_servers: dict[Path, Any] = {}  # keep pgserver handles alive for the process's lifetime

#: Settings of the embedded PostgreSQL, which shares the host's cores with the server.
#: Autovacuum pauses 10 ms (PostgreSQL's default: 2) after every 50 units of work (its
#: default: 200): its passes over the tables then trickle over several seconds at under
#: a fifth of a core instead of bursting at half a core (at 5,000 units on 2 cores, a
#: burst put the acks of its seconds over the p99 target: BENCHMARKS.md, 2026-11-30).
#: That allows 5,000 units of work a second: about 240 freshly written pages vacuumed a
#: second (2 MB/s), twice what 5,000 vehicles at 1 Hz write. An external PostgreSQL
#: keeps its operator's settings.
EMBEDDED_SETTINGS = {
    "autovacuum_vacuum_cost_delay": "10ms",
    "autovacuum_vacuum_cost_limit": "50",
}


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
        for name, value in EMBEDDED_SETTINGS.items():
            server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
        server.psql("SELECT pg_reload_conf();")
        _servers[pgdata] = server
    return _servers[pgdata]


def database_url(settings: Settings) -> str:
    """The URL every component connects to; starts the embedded server when none is set."""
    if settings.database_url:
        return settings.database_url
    try:
        server = start_embedded(settings.data_dir)
    except OSError as exc:  # e.g. TELEMATICS_DATA_DIR names a file, or is not writable
        raise ConfigError(
            f"TELEMATICS_DATA_DIR {settings.data_dir}: cannot hold the embedded database"
            f" ({exc.strerror or exc})"
        ) from exc
    url: str = server.get_uri(EMBEDDED_DB)
    log.info("embedded PostgreSQL at %s", url)
    return url


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET
    ALL): nothing here leaves session state on a pooled connection (LISTEN has its own
    connection, advisory locks are per transaction, no SET), and asyncpg still rolls back
    an open transaction first. The query was a round trip per release, and a device
    connect released three: a fifth of a worker's CPU while a fleet reconnected."""


async def create_pool(url: str, size: int = 4) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=size, command_timeout=60, reset=_keep_session
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


async def connect(settings: Settings) -> asyncpg.Connection:
    """One connection for a command-line tool; a ``StorageError`` naming the setting when
    the URL is malformed or nothing answers there."""
    url = database_url(settings)
    where = "TELEMATICS_DATABASE_URL" if settings.database_url else "the embedded PostgreSQL"
    try:
        conn: asyncpg.Connection = await asyncpg.connect(url)
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # ValueError: asyncpg's own parse of a bad port; InterfaceError: a bad DSN
        raise StorageError(f"cannot connect to PostgreSQL ({where}): {exc}") from None
    return conn


def run_with_db(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """For command-line tools: run ``work`` on one connection to a migrated database."""

    async def run() -> T:
        conn = await connect(settings)
        try:
            await migrate(conn)
            return await work(conn)
        except asyncpg.DataError as exc:
            # Input the checks let through but PostgreSQL refuses (say, a NUL in a text):
            # the command fails as a whole, with the database's reason.
            raise StorageError(f"the database refused the input: {exc}") from None
        finally:
            await conn.close()

    return asyncio.run(run())
