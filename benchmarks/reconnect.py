"""Reconnect storm: how fast a whole fleet is back after a server restart or a network cut.

Every unit opens its WebSocket at once (at most ``--inflight`` handshakes outstanding,
as a fleet's backoff spreads them); each counts as back when its ``welcome`` arrives.
Prints one JSON document: per storm, connects/s, time to welcome p50/p99, and the
server's CPU per connect (all its processes). The clients are lean raw sockets, so the
server is what is measured, not the load generator.

Two storms: ``cold`` (the server has never seen the units: each connect restores the
vehicle's open alarms from the database) and ``warm`` (the same units again, their
state cached in the workers).

    python benchmarks/reconnect.py [--units 5000] [--workers 2] [--inflight 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ingest import Server, prepare, python_loop_seconds, server_stats
from recorded_fleet import CLOSE_FRAME, upgrade_request

from telematics.spread import spread
from telematics.store.database import EMBEDDED_DB, start_embedded


async def _connect(port: int, token: str, n: int) -> tuple[float, asyncio.StreamWriter]:
    """Seconds from the TCP connect to the ``welcome`` frame, and the open connection."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request("127.0.0.1", port, token, n.to_bytes(16, "big")))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head[:80]!r}")
    first, size = await reader.readexactly(2)
    length = size & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    payload = await reader.readexactly(length)
    if first & 0x0F != 1 or b'"welcome"' not in payload:
        raise RuntimeError(f"expected a welcome, got {payload[:80]!r}")
    return time.perf_counter() - started, writer


async def storm(
    port: int, tokens: list[str], inflight: int
) -> tuple[list[float], float, list[asyncio.StreamWriter]]:
    gate = asyncio.Semaphore(inflight)

    async def one(n: int, token: str) -> tuple[float, asyncio.StreamWriter]:
        async with gate:
            return await _connect(port, token, n)

    started = time.perf_counter()
    done = await asyncio.gather(*(one(n, t) for n, t in enumerate(tokens)))
    wall = time.perf_counter() - started
    return [d[0] for d in done], wall, [d[1] for d in done]


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.write(CLOSE_FRAME)
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def run(server: Server, tokens: list[str], inflight: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("cold", "warm"):
        cpu0 = server.cpu_seconds()
        latencies, wall, writers = await storm(server.port, tokens, inflight)
        cpu = server.cpu_seconds() - cpu0
        welcome_ms = spread((s * 1e3 for s in latencies), 1)
        out[name] = {
            "connects_per_s": round(len(tokens) / wall),
            "seconds_to_all_welcomed": round(wall, 2),
            "welcome_p50_ms": welcome_ms["p50"],
            "welcome_p99_ms": welcome_ms["p99"],
            "server_cpu_ms_per_connect": round(cpu / len(tokens) * 1e3, 3),
        }
        await close_all(writers)
        await asyncio.sleep(2.0)  # the workers notice the closes and detach
    out["handshakes_abandoned_one_worker"] = server_stats(server.port).get("handshakes_abandoned")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=200, help="handshakes outstanding")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                          "python_loop_10m_s": python_loop_seconds()}}  # fmt: skip
    result.update(units=args.units, workers=args.workers, inflight=args.inflight)
    with tempfile.TemporaryDirectory(prefix="telematics-reconnect-") as tmp:
        work = Path(tmp)
        embedded = start_embedded(work, cleanup_mode="delete")
        try:
            db_url = embedded.get_uri(EMBEDDED_DB)
            token_file = work / "tokens.csv"
            asyncio.run(prepare(db_url, args.units, token_file))
            tokens = [line.split(",")[1] for line in token_file.read_text().splitlines()]
            server = Server("real", db_url, work, args.workers)
            try:
                result.update(asyncio.run(run(server, tokens, args.inflight)))
            finally:
                server.stop()
        finally:
            embedded.cleanup()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
