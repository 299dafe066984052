"""A cheaper encoder for ``timestamptz`` on the batch writer's connection, same bytes.

asyncpg's own binary encoder compares every value with its (naive) infinity datetimes
before converting it to UTC; for an aware value each comparison calls ``utcoffset``
through the generic method protocol, and it was over half of the writer's COPY of
telemetry and tire rows (the rows carry a ``datetime`` each). :func:`install` replaces
it, for one connection, with a "tuple" codec (microseconds since 2000-01-01 UTC) whose
encoder takes a short path for the values the pipeline builds (a ``datetime`` with a
fixed UTC offset) and repeats asyncpg's steps for anything else, so that every value
becomes the same 8 bytes as before, is refused with the same error, and every stored
value reads back as the same object.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's
# asyncpg's stand-ins for PostgreSQL's ±infinity (naive), and their int64 encodings
INFINITY = datetime(9999, 12, 31, 23, 59, 59, 999999)
NEGATIVE_INFINITY = datetime(1, 1, 1)
_PG_INFINITY = 0x7FFFFFFFFFFFFFFF
_PG_NEGATIVE_INFINITY = -0x8000000000000000
# µs since the epoch of those two instants (naive ones taken as UTC): asyncpg writes
# them as ±infinity too
_INFINITY_US = 252455615999999999
_NEGATIVE_INFINITY_US = -63082281600000000


def encode(value: object) -> tuple[int]:
    """``value`` as asyncpg's binary ``timestamptz`` encoder writes it (µs since 2000)."""
    # Every ts the pipeline builds: aware, with a fixed offset (its instant is the same
    # as asyncpg's value.astimezone(UTC) within the range checked; never equal to the
    # naive infinities).
    if type(value) is datetime and type(value.tzinfo) is timezone:
        delta = value - _EPOCH
        micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        if _NEGATIVE_INFINITY_US < micros < _INFINITY_US:
            return (micros,)
    return _encode_any(value)


def _encode_any(value: object) -> tuple[int]:
    """asyncpg's steps (pgproto ``timestamptz_encode``), one by one."""
    if not isinstance(value, datetime):
        if isinstance(value, date):
            value = datetime(value.year, value.month, value.day, tzinfo=_local_timezone())
        else:
            raise TypeError(
                "expected a datetime.date or datetime.datetime instance, "
                f"got {type(value).__name__!r}"
            )
    if value == INFINITY:
        return (_PG_INFINITY,)
    if value == NEGATIVE_INFINITY:
        return (_PG_NEGATIVE_INFINITY,)
    delta = value.astimezone(UTC) - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if micros == _INFINITY_US:
        return (_PG_INFINITY,)
    if micros == _NEGATIVE_INFINITY_US:
        return (_PG_NEGATIVE_INFINITY,)
    return (micros,)


def decode(value: tuple[int]) -> datetime:
    """As asyncpg's binary decoder: aware UTC, or its naive stand-ins for ±infinity."""
    micros = value[0]
    if micros == _PG_INFINITY:
        return INFINITY
    if micros == _PG_NEGATIVE_INFINITY:
        return NEGATIVE_INFINITY
    return _EPOCH + timedelta(0, micros // 1_000_000, micros % 1_000_000)


def _local_timezone() -> timezone:
    offset = datetime.now(UTC).astimezone().utcoffset()
    assert offset is not None
    return timezone(offset)


async def install(conn: asyncpg.Connection) -> None:
    """Use :func:`encode` and :func:`decode` for ``timestamptz`` on this connection."""
    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=encode, decoder=decode, format="tuple"
    )
