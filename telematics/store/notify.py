"""LISTEN on a dedicated connection, forever: reconnect when it is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import asyncpg

log = logging.getLogger(__name__)

Callback = Callable[[asyncpg.Connection, int, str, str], None]


async def listen_forever(
    database_url: str, channels: Sequence[str], callback: Callback, retry_s: float = 5.0
) -> None:
    """A pooled connection would be reset (UNLISTEN) on release, hence its own. Notices
    sent while reconnecting are missed; callers say what that costs them."""
    while True:
        try:
            conn = await asyncpg.connect(database_url)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("listener for %s cannot connect (%r); retrying", ",".join(channels), exc)
            await asyncio.sleep(retry_s)
            continue
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            for channel in channels:
                await conn.add_listener(channel, callback)
            await lost.wait()
            log.warning("listener for %s lost its connection; reconnecting", ",".join(channels))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("listener for %s failed (%r); reconnecting", ",".join(channels), exc)
        finally:
            if not conn.is_closed():
                conn.terminate()
