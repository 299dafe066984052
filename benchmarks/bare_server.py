"""The baseline for the ingest benchmark: a WebSocket server that only parses each frame
and acks it (no validation, no state, no database). Same stack as the real server:
aiohttp on uvloop, orjson.

    python benchmarks/bare_server.py --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import UTC, datetime

import orjson
from aiohttp import WSMsgType, web


async def device(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, decode_text=False, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    welcome = {
        "type": "welcome",
        "vehicle_id": "bare",
        "last_seq": 0,
        "server_time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    await ws.send_frame(orjson.dumps(welcome), WSMsgType.TEXT)
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        frame = orjson.loads(msg.data)
        if frame.get("type") == "batch":
            seq = frame["items"][-1]["seq"]
        else:
            seq = frame.get("seq")
        if seq is not None:
            await ws.send_frame(orjson.dumps({"type": "ack", "seq": seq}), WSMsgType.TEXT)
    return ws


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/v1/device", device)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(main(args.port))
