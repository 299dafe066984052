"""FrameFeed: text frames handled as parsed while idle, aiohttp's path otherwise, in order.

A real aiohttp server on a free port and a real websockets client; the handler below
is the part a DeviceConnection plays.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import pytest
import websockets
from aiohttp import WSMessage, WSMsgType, web

from telematics.ingest.feed import DeviceSocket

#: sha256 of aiohttp's WebSocketResponse._post_start that DeviceSocket._post_start
#: repeats. If this fails, aiohttp changed it: bring DeviceSocket's copy up to date.
POST_START_SHA256 = "5537cb3f2ecae6ed9f4d27d6d9255adb414e81efcc4d23ede6bacd762d56ed93"


def test_device_socket_repeats_aiohttps_post_start() -> None:
    source = inspect.getsource(web.WebSocketResponse._post_start)
    assert hashlib.sha256(source.encode()).hexdigest() == POST_START_SHA256


@dataclass
class Seen:
    """What the server saw, in order: (path, payload)."""

    frames: list[tuple[str, str]] = field(default_factory=list)
    waits: dict[str, asyncio.Event] = field(default_factory=dict)
    sockets: list[DeviceSocket] = field(default_factory=list)
    handled_after_close: int = 0  # frames the inline handler saw once our side closed


SEEN = web.AppKey("seen", Seen)


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


async def _serve(request: web.Request) -> web.WebSocketResponse:
    seen = request.app[SEEN]
    ws = DeviceSocket(autoping=False, decode_text=False)
    await ws.prepare(request)
    seen.sockets.append(ws)

    def handle(data: bytes, path: str = "inline") -> Awaitable[None] | None:
        text = data.decode()
        if ws.closed:
            seen.handled_after_close += 1
        seen.frames.append((path, text))
        if text.startswith("wait:"):  # what a model's micro-batch or a full backlog is
            return _wait(seen.waits[text])
        return None

    async def message(msg: WSMessage) -> bool:
        if msg.type is WSMsgType.TEXT:
            rest = handle(msg.data, "receive")
            if rest is not None:
                await rest
        elif msg.type is WSMsgType.PING:
            seen.frames.append(("receive", "ping"))
            await ws.pong(msg.data)
        else:
            return False
        return True

    await ws.serve(handle, message, lambda: False)
    return ws


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, Seen]]:
    app = web.Application()
    app[SEEN] = Seen()
    app.router.add_get("/", _serve)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"ws://127.0.0.1:{port}/", app[SEEN]
    await runner.cleanup()


async def _until(seen: Seen, n: int) -> None:
    for _ in range(500):
        if len(seen.frames) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"saw {seen.frames}, expected {n} frames")


async def test_idle_frames_are_handled_as_parsed(site: tuple[str, Seen]) -> None:
    url, seen = site
    async with websockets.connect(url) as ws:
        for i in range(5):
            await ws.send(f"f{i}")
        await _until(seen, 5)
    assert seen.frames == [("inline", f"f{i}") for i in range(5)]


async def test_frames_after_a_wait_keep_their_order_then_go_inline_again(
    site: tuple[str, Seen],
) -> None:
    url, seen = site
    release = seen.waits["wait:1"] = asyncio.Event()
    async with websockets.connect(url) as ws:
        await ws.send("f0")
        await ws.send("wait:1")
        await _until(seen, 2)
        for i in range(2, 6):
            await ws.send(f"f{i}")
        await asyncio.sleep(0.2)
        assert len(seen.frames) == 2  # nothing overtakes the frame being waited for
        release.set()
        await _until(seen, 6)
        await ws.send("f6")
        await _until(seen, 7)
    assert seen.frames == [
        ("inline", "f0"),
        ("inline", "wait:1"),
        *[("receive", f"f{i}") for i in range(2, 6)],
        ("inline", "f6"),
    ]


async def test_control_frames_take_aiohttps_path(site: tuple[str, Seen]) -> None:
    url, seen = site
    async with websockets.connect(url) as ws:
        await ws.send("f0")
        pong = await ws.ping(b"x")
        await asyncio.wait_for(pong, 5)
        await ws.send("f1")
        await _until(seen, 3)
    assert seen.frames == [("inline", "f0"), ("receive", "ping"), ("inline", "f1")]


async def test_frames_after_our_close_are_left_to_aiohttps_close(site: tuple[str, Seen]) -> None:
    url, seen = site
    async with websockets.connect(url) as ws:
        await ws.send("f0")
        await _until(seen, 1)
        closing = asyncio.create_task(seen.sockets[0].close())
        try:
            for i in range(1, 500):
                await ws.send(f"f{i}")
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(closing, 10)
    assert seen.handled_after_close == 0
