"""The simulator's WebSocket link against a raw TCP server that cuts frames where it likes.

The server writes the handshake response and the frames itself, so each test chooses
how the bytes fall into segments: several frames in one, a frame split byte by byte,
the handshake ending inside a frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from telematics.sim.fake_server import encode_frame, websocket_accept
from telematics.sim.link import UnitConnection

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


def frame(payload: bytes, first: int = 0x81, masked: bool = False) -> bytes:
    """``encode_frame``'s frame with another first byte (e.g. no FIN), or masked."""
    encoded = encode_frame(first & 0x0F, payload)
    header = bytearray(encoded[: len(encoded) - len(payload)])
    header[0] = first
    if masked:
        header[1] |= 0x80
        header += b"\0\0\0\0"  # a zero mask leaves the payload as it is
    return bytes(header) + payload


async def handshake_response(reader: asyncio.StreamReader) -> bytes:
    request = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + websocket_accept(key) + b"\r\n\r\n"
    )


async def client_frames(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """Frames the client sent until it closed (opcode, unmasked payload)."""
    out: list[tuple[int, bytes]] = []
    while True:
        try:
            head = await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            return out
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        mask = await reader.readexactly(4)
        data = await reader.readexactly(n)
        out.append((head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))))
        if head[0] & 0x0F == 0x8:
            return out


async def run_link(
    script: Script, ping_interval: float | None = None, ping_timeout: float | None = None
) -> tuple[list[bytes], UnitConnection, list[tuple[int, bytes]]]:
    """Connect a UnitConnection to a server running ``script``; the messages delivered,
    the connection, and the frames the client sent back."""
    sent_back: list[tuple[int, bytes]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        response = await handshake_response(reader)
        await script(reader, writer, response)
        sent_back.extend(await client_frames(reader))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    messages: list[bytes] = []
    async with server:
        ws = await connect(
            f"ws://127.0.0.1:{port}/", create_connection=UnitConnection, compression=None,
            max_size=2**20, ping_interval=ping_interval, ping_timeout=ping_timeout,
        )  # fmt: skip
        assert isinstance(ws, UnitConnection)
        ws.attach(messages.append)
        try:
            await asyncio.wait_for(ws.wait_closed(), 10)
        finally:
            await ws.close()
    return messages, ws, sent_back


async def pause() -> None:
    await asyncio.sleep(0.02)  # let the client read this segment on its own


@pytest.mark.asyncio
async def test_frames_in_one_segment_and_split_byte_by_byte_arrive_whole_and_in_order() -> None:
    big = b"x" * 70_000
    medium = b'{"type":"intervention","message":"' + b"m" * 200 + b'"}'

    async def script(_: asyncio.StreamReader, w: asyncio.StreamWriter, response: bytes) -> None:
        w.write(response + frame(b'{"type":"welcome"}'))
        await pause()
        w.write(
            frame(b'{"type":"ack","seq":1}')
            + frame(medium)
            + frame(big)
            + frame(b"frag", first=0x01)  # a fragmented message: the protocol joins it
            + frame(b"ment", first=0x80)
            + frame(b"are you there", first=0x89)  # a ping: the client answers
        )
        await pause()
        for byte in frame(b'{"type":"ack","seq":2}') + frame(b'{"type":"ack","seq":3}'):
            w.write(bytes((byte,)))
            await asyncio.sleep(0)
        await pause()
        w.write(frame((1000).to_bytes(2, "big"), first=0x88))  # close

    messages, ws, sent_back = await run_link(script)

    assert ws._framing  # the link split the frames itself after the handshake
    assert messages == [
        b'{"type":"welcome"}',
        b'{"type":"ack","seq":1}',
        medium,
        big,
        b"fragment",
        b'{"type":"ack","seq":2}',
        b'{"type":"ack","seq":3}',
    ]
    assert (0xA, b"are you there") in sent_back  # pong
    assert sent_back[-1][0] == 0x8  # the closing handshake ran
    assert ws.close_code == 1000


@pytest.mark.asyncio
async def test_a_handshake_ending_inside_a_frame_leaves_the_parsing_to_websockets() -> None:
    welcome = frame(b'{"type":"welcome"}')

    async def script(_: asyncio.StreamReader, w: asyncio.StreamWriter, response: bytes) -> None:
        w.write(response + welcome[:5])
        await pause()
        w.write(welcome[5:] + frame(b'{"type":"ack","seq":1}'))
        await pause()
        w.write(frame((1000).to_bytes(2, "big"), first=0x88))

    messages, ws, _ = await run_link(script)

    assert not ws._framing
    assert messages == [b'{"type":"welcome"}', b'{"type":"ack","seq":1}']


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(b'{"type":"ack","seq":1}', masked=True), 1002),  # a server must not mask
        (frame(b"y" * (2**20 + 1)), 1009),  # beyond max_size
    ],
)
async def test_bad_frames_fail_the_connection_and_are_not_delivered(bad: bytes, code: int) -> None:
    async def script(_: asyncio.StreamReader, w: asyncio.StreamWriter, response: bytes) -> None:
        w.write(response + frame(b'{"type":"welcome"}'))
        await pause()
        w.write(bad + frame(b'{"type":"ack","seq":9}'))

    messages, ws, sent_back = await run_link(script)

    assert messages == [b'{"type":"welcome"}']
    closing = sent_back[-1]  # the client's close frame: opcode, status code
    assert (closing[0], int.from_bytes(closing[1][:2], "big")) == (0x8, code)
    with pytest.raises(ConnectionClosed):
        await ws.send("after")


PING, PONG = 0x9, 0xA


@pytest.mark.asyncio
async def test_a_link_that_hears_the_server_sends_no_keepalive_pings() -> None:
    async def script(_: asyncio.StreamReader, w: asyncio.StreamWriter, response: bytes) -> None:
        w.write(response + frame(b'{"type":"welcome"}'))
        for seq in range(16):  # an ack every 50 ms for 0.8 s: 4 ping intervals
            await asyncio.sleep(0.05)
            w.write(frame(b'{"type":"ack","seq":%d}' % seq))
        w.write(frame((1000).to_bytes(2, "big"), first=0x88))

    messages, _, sent_back = await run_link(script, ping_interval=0.2, ping_timeout=1.0)

    assert len(messages) == 17
    assert [op for op, _ in sent_back if op == PING] == []


@pytest.mark.asyncio
async def test_a_quiet_link_is_pinged_and_fails_when_no_pong_comes() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, response: bytes) -> None:
        w.write(response + frame(b'{"type":"welcome"}'))
        await asyncio.sleep(1.0)  # silent, and deaf to the ping

    started = asyncio.get_running_loop().time()
    messages, ws, sent_back = await run_link(script, ping_interval=0.2, ping_timeout=0.3)
    took = asyncio.get_running_loop().time() - started

    assert messages == [b'{"type":"welcome"}']
    ops = [op for op, _ in sent_back]
    assert ops.count(PING) == 1 and ops[-1] == 0x8
    assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1011
    assert took < 5  # failed by the keepalive, not by run_link's 10 s wait


@pytest.mark.asyncio
async def test_a_quiet_link_answered_by_pongs_stays_open() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, response: bytes) -> None:
        w.write(response + frame(b'{"type":"welcome"}'))
        pings = 0
        while pings < 3:  # answer three keepalive pings, then close
            op, payload = (await client_frames_until_ping(r))[-1]
            assert op == PING
            pings += 1
            w.write(frame(payload, first=0x8A))
        w.write(frame((1000).to_bytes(2, "big"), first=0x88))

    _, ws, _ = await run_link(script, ping_interval=0.1, ping_timeout=0.5)

    assert ws.close_code == 1000  # closed by the server, not failed by the keepalive


async def client_frames_until_ping(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """The client's frames up to and including its next ping."""
    out: list[tuple[int, bytes]] = []
    while not out or out[-1][0] != PING:
        head = await reader.readexactly(2)
        n = head[1] & 0x7F
        mask = await reader.readexactly(4)
        data = await reader.readexactly(n)
        out.append((head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))))
    return out
