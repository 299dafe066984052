"""The writer's timestamptz codec writes and reads exactly what asyncpg's own does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from telematics.store import timestamps


class _Subclass(datetime):
    pass


_VALUES: list[object] = [
    datetime(2026, 11, 29, 5, 10, 0, 123456, tzinfo=UTC),
    datetime(2026, 11, 29, 5, 10, tzinfo=UTC),
    datetime.now(UTC),
    datetime(2026, 11, 29, 13, 10, 0, 1, tzinfo=timezone(timedelta(hours=8))),
    datetime(2026, 11, 29, 1, 40, tzinfo=timezone(-timedelta(hours=3, minutes=30))),
    datetime(2026, 11, 29, 10, 40, 15, tzinfo=timezone(timedelta(hours=5, minutes=30, seconds=15))),
    datetime(2026, 7, 1, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
    datetime(2026, 3, 29, 1, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin")),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before PostgreSQL's epoch
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),  # asyncpg writes -infinity for this instant
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # ... and infinity for this
    datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999),  # naive: asyncpg's infinity
    datetime(1, 1, 1),  # naive: its -infinity
    datetime(2026, 11, 29, 5, 10),  # naive: local time
    date(2026, 11, 29),  # local midnight
    _Subclass(2026, 11, 29, 5, 10, tzinfo=UTC),
]


@pytest.fixture
async def plain(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_url, server_settings={"TimeZone": "UTC"})
    yield conn
    await conn.close()


@pytest.fixture
async def ours(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_url, server_settings={"TimeZone": "UTC"})
    await timestamps.install(conn)
    yield conn
    await conn.close()


async def test_values_are_written_as_asyncpg_writes_them(
    plain: asyncpg.Connection, ours: asyncpg.Connection
) -> None:
    for value in _VALUES:
        expected = await plain.fetchval("SELECT $1::timestamptz::text", value)
        assert await ours.fetchval("SELECT $1::timestamptz::text", value) == expected, value


async def test_copy_writes_the_same_rows(
    plain: asyncpg.Connection, ours: asyncpg.Connection
) -> None:
    await plain.execute("CREATE TABLE t (n int, ts timestamptz)")
    rows = list(enumerate(_VALUES))
    await plain.copy_records_to_table("t", records=rows)
    await ours.copy_records_to_table("t", records=[(n + 100, ts) for n, ts in rows])
    stored = await plain.fetch("SELECT n, ts::text FROM t ORDER BY n")
    assert [r["ts"] for r in stored[: len(rows)]] == [r["ts"] for r in stored[len(rows) :]]


async def test_values_are_read_as_asyncpg_reads_them(
    plain: asyncpg.Connection, ours: asyncpg.Connection
) -> None:
    texts = [
        "2026-11-29 05:10:00.123456+00",
        "1999-12-31 23:59:59.999999+00",
        "0001-01-01 00:00:00+00",
        "9999-12-31 23:59:59.999999+00",
        "infinity",
        "-infinity",
        "2026-11-29 13:10:00+08",
    ]
    for text in texts:
        expected = await plain.fetchval("SELECT $1::text::timestamptz", text)
        got = await ours.fetchval("SELECT $1::text::timestamptz", text)
        assert got == expected and got.tzinfo is expected.tzinfo, text
    for text in ("20000-01-01 00:00:00+00", "4000-01-01 00:00:00+00 BC"):  # beyond datetime
        with pytest.raises(OverflowError):
            await plain.fetchval("SELECT $1::text::timestamptz", text)
        with pytest.raises(OverflowError):
            await ours.fetchval("SELECT $1::text::timestamptz", text)


async def test_a_value_that_is_no_time_is_refused_alike(
    plain: asyncpg.Connection, ours: asyncpg.Connection
) -> None:
    refusal = r"expected a datetime\.date or datetime\.datetime instance, got 'str'"
    for conn in (plain, ours):
        with pytest.raises(asyncpg.DataError, match=refusal):
            await conn.fetchval("SELECT $1::timestamptz", "2026-11-29T05:10:00Z")
    await plain.execute("CREATE TABLE t (ts timestamptz)")
    errors = []
    for conn in (plain, ours):
        with pytest.raises(TypeError) as caught:
            await conn.copy_records_to_table("t", records=[(1.5,)])
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
