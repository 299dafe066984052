"""A unit's WebSocket link, lean enough for one process to drive thousands of units.

A load generator's cost per message is part of every latency it measures (it shares the
machine with the server in the benchmarks), so the two per-message paths skip what a
unit does not need from websockets' asyncio layer:

- **Receiving.** :class:`UnitConnection` hands each complete message to the unit's
  handler from ``data_received`` instead of queueing it for ``recv()``: no future, no
  task wake-up and no queue per message. websockets' Sans-I/O protocol still parses
  the frames, answers pings and runs the closing handshake.
- **Sending.** :func:`write_now` writes a masked text frame straight to the transport
  (no async context manager and no drain per frame); a backed-up socket falls back to
  waiting, see :meth:`UnitConnection.drain`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.speedups import apply_mask

#: Bytes buffered in the transport beyond which writes wait for it to drain.
FAST_WRITE_LIMIT = 64 * 1024

Handler = Callable[[bytes], None]

_DATA = (Opcode.TEXT, Opcode.BINARY)


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

    def attach(self, handler: Handler) -> None:
        self._handler = handler
        early, self._early = self._early, []
        for message in early:
            handler(message)

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
