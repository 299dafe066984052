"""Shared fixtures: an embedded PostgreSQL (or TELEMATICS_DATABASE_URL), a fresh migrated
database per test cloned from a template, and a real server on a free port."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from telematics.store.migrate import migrate
from tests.helpers import RunningServer, start_server, with_database

_counter = itertools.count()


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """A maintenance URL on a PostgreSQL we may create databases in."""
    external = os.environ.get("TELEMATICS_DATABASE_URL")
    if external:
        yield external
        return
    import pgserver

    # Not under pytest's basetemp: a newer pytest session (say, a second checkout's) prunes
    # old basetemp directories, which would delete a live data directory from under us.
    pgdata = Path(tempfile.mkdtemp(prefix="telematics-test-pg-"))
    server: Any = pgserver.get_server(pgdata, cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()


@pytest.fixture(scope="session")
async def template_db(admin_url: str) -> AsyncIterator[str]:
    name = f"telematics_tmpl_{os.getpid()}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name}")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    conn = await asyncpg.connect(with_database(admin_url, name))
    await migrate(conn)
    await conn.close()
    yield name
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.close()


@pytest.fixture
async def db_url(admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"telematics_t{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    await conn.close()
    yield with_database(admin_url, name)
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.close()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_url)
    yield conn
    await conn.close()


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[RunningServer]:
    running = await start_server(db_url)
    yield running
    await running.stop()
