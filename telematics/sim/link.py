"""A unit's WebSocket link, lean enough for one process to drive thousands of units.

A load generator's cost per message is part of every latency it measures (it shares the
machine with the server in the benchmarks), so the two per-message paths skip what a
unit does not need from websockets' asyncio layer:

- **Receiving.** :class:`UnitConnection` hands each complete message to the unit's
  handler from ``data_received`` instead of queueing it for ``recv()``: no future, no
  task wake-up and no queue per message. Once the link is open and websockets' parser
  stands between two frames, the link splits the server's frames itself and hands a
  final text frame (nearly every frame: acks, interventions) straight to the handler;
  any other frame (ping, pong, close, fragments, anything malformed) goes whole to the
  Sans-I/O protocol, which answers pings, runs the closing handshake and fails the
  connection on bad input as before. websockets' parser cost ~14 % of the generator's
  CPU at 5,000 units × 1 Hz.
- **Sending.** :func:`write_now` writes a masked text frame straight to the transport
  (no async context manager and no drain per frame); a backed-up socket falls back to
  waiting, see :meth:`UnitConnection.drain`.
- **Keepalive.** A ping goes out only when nothing has arrived for ``ping_interval``, as a
  JT/T 808 terminal sends its heartbeat only when idle: a unit at 1 Hz hears an ack every
  second, so websockets' ping every 20 s whatever the traffic was 250 needless round trips
  a second at 5,000 units, paid by the generator and the server alike.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.speedups import apply_mask

#: Bytes buffered in the transport beyond which writes wait for it to drain.
FAST_WRITE_LIMIT = 64 * 1024

Handler = Callable[[bytes], None]

_DATA = (Opcode.TEXT, Opcode.BINARY)

#: First header byte of a final text frame without extension bits (RFC 6455 §5.2).
_FINAL_TEXT = 0x81

#: A frame length no message reaches (websockets' ``max_size=None``).
_NO_LIMIT = 2**63


class UnitConnection(ClientConnection):
    """A client connection that calls one handler per complete message.

    Messages that arrive before :meth:`attach` (a welcome in the same segment as the
    handshake response) are kept and handed over by it. The handler must not raise.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handler: Handler | None = None
        self._early: list[bytes] = []
        self._fragments: list[bytes] | None = None
        # Set once websockets' parser is known to stand between frames (see data_received);
        # from then on, bytes of a frame not yet complete wait here.
        self._framing = False
        self._partial = b""
        self._max_message = self.protocol.max_message_size or _NO_LIMIT
        #: loop.time() when bytes last arrived (what the idle keepalive watches).
        self.last_heard = self.loop.time()

    def attach(self, handler: Handler) -> None:
        self._handler = handler
        early, self._early = self._early, []
        for message in early:
            handler(message)

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()
        if self._partial:  # it starts on a frame boundary, where the protocol's parser stands
            data, self._partial = self._partial + data, b""
        if not self._framing or not self._open():
            opening = self.protocol.state is State.CONNECTING
            super().data_received(data)
            if opening and self.protocol.state is State.OPEN:
                # Decided once, on the segment that completes the handshake: if it ends
                # inside a frame, the protocol keeps parsing this link (rare, correct).
                self._framing = _ends_on_frame(data)
            return
        size = len(data)
        pos = 0
        while pos < size:
            end, start = _frame_span(data, pos, self._max_message)
            if end > size:
                self._partial = data[pos:]
                return
            if data[pos] == _FINAL_TEXT and start:
                self._deliver(data[start:end])
            else:  # control, fragment, malformed: websockets' protocol decides
                super().data_received(data[pos:end])
                if not self._open():  # failed or closing: the rest is the protocol's too
                    super().data_received(data[end:])
                    return
            pos = end

    def _open(self) -> bool:
        return self.protocol.state is State.OPEN

    async def keepalive(self) -> None:
        """Ping once the link has been quiet for ``ping_interval``; fail it when the pong
        does not come within ``ping_timeout`` (websockets' own keepalive, idle-only)."""
        interval = self.ping_interval
        assert interval is not None
        try:
            while True:
                quiet_for = self.loop.time() - self.last_heard
                if quiet_for < interval:
                    await asyncio.sleep(interval - quiet_for)
                    continue
                pong_received = await self.ping()
                if self.ping_timeout is None:
                    await asyncio.sleep(interval)
                    continue
                try:
                    async with asyncio.timeout(self.ping_timeout):
                        await pong_received  # connection_lost cancels this task
                except TimeoutError:
                    async with self.send_context():
                        self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    return
        except Exception:
            self.logger.error("keepalive ping failed", exc_info=True)

    def process_event(self, event: Any) -> None:
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake response
            return
        if event.opcode in _DATA:
            if event.fin:
                self._deliver(bytes(event.data))
            else:
                self._fragments = [bytes(event.data)]
        elif event.opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(bytes(event.data))
            if event.fin:
                message, self._fragments = b"".join(self._fragments), None
                self._deliver(message)
        elif event.opcode is Opcode.PONG:
            self.acknowledge_pings(bytes(event.data))

    def _deliver(self, message: bytes) -> None:
        if self._handler is None:
            self._early.append(message)
        else:
            self._handler(message)

    def writable(self) -> bool:
        """Open and not backed up: :func:`write_now` may write at once."""
        return (
            self.protocol.state is State.OPEN
            and self.transport.get_write_buffer_size() <= FAST_WRITE_LIMIT
        )


def _frame_span(data: bytes, pos: int, max_size: int) -> tuple[int, int]:
    """(end, payload start) of the frame at ``pos``; end beyond ``data`` while incomplete.

    Payload start is 0 for a frame to leave to websockets' protocol: masked (a server
    must not mask), or longer than ``max_size`` (the protocol closes with 1009).
    """
    avail = len(data) - pos
    if avail < 2:
        return pos + 2, 0
    second = data[pos + 1]
    length = second & 0x7F
    start = pos + 2
    if length == 126:
        if avail < 4:
            return pos + 4, 0
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        start = pos + 4
    elif length == 127:
        if avail < 10:
            return pos + 10, 0
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        start = pos + 10
    if second & 0x80:
        start += 4
        return start + length, 0
    if length > max_size:
        return len(data), 0  # the rest at once: the protocol fails the connection
    return start + length, start


def _ends_on_frame(data: bytes) -> bool:
    """Whether the frames after the handshake response's end in ``data`` end exactly at
    the end of ``data`` (false when the response's end is not in it)."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    pos = head_end + 4
    while pos < len(data):
        end, _ = _frame_span(data, pos, _NO_LIMIT)
        pos = end
    return pos == len(data)


def write_now(ws: UnitConnection, payload: bytes) -> bool:
    """Write a text frame at once if the link is :meth:`~UnitConnection.writable`.

    False means nothing was written: wait with ``await ws.drain()`` (or use
    ``ws.send()``, which waits for the buffer or raises ConnectionClosed).
    """
    if not ws.writable():
        return False
    write_frame(ws, payload)
    return True


def write_frame(ws: UnitConnection, payload: bytes) -> None:
    """Write a text frame whatever the buffer (callers check :meth:`~UnitConnection.writable`)."""
    ws.transport.write(masked_text_frame(payload))


_mask_bits = random.Random().getrandbits


def masked_text_frame(payload: bytes) -> bytes:
    """A final, masked client text frame (RFC 6455 §5.2), built here instead of by the
    websockets protocol object: its mask comes from os.urandom, a system call per frame
    that cost the load generator ~7 % of its CPU. A load generator's masks only need to
    vary, so a PRNG does; the protocol object sends nothing but whole messages here."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = b"\x81\xfe" + n.to_bytes(2, "big")
    else:
        header = b"\x81\xff" + n.to_bytes(8, "big")
    mask = _mask_bits(32).to_bytes(4, "big")
    return header + mask + apply_mask(payload, mask)
