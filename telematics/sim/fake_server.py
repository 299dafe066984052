"""A minimal, fast protocol-v1 ack server for measuring the simulator on its own.

It speaks just enough WebSocket (RFC 6455, no extensions) over a raw asyncio protocol
to be much cheaper per frame than the simulator, so a benchmark measures the client:
it sends ``welcome`` (with the highest seq it acked for that token, kept in memory),
acks every data frame's highest ``seq``, answers pings and close frames, and can send
an ``intervention`` for every n-th device event. It stores nothing and validates
almost nothing. Not a server to run a fleet against::

    python -m telematics.sim.fake_server --port 8765 [--intervene-every 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from websockets.speedups import apply_mask

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def websocket_accept(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value answering a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


@dataclass
class FakeServerStats:
    connections: int = 0
    frames: int = 0
    items: int = 0
    events: int = 0
    duplicates: int = 0
    gaps: int = 0
    interventions_sent: int = 0
    intervention_acks: dict[str, int] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)  # by token

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "frames": self.frames,
            "items": self.items,
            "events": self.events,
            "duplicates": self.duplicates,
            "gaps": self.gaps,
            "interventions_sent": self.interventions_sent,
            "intervention_acks": dict(self.intervention_acks),
            "vehicles": len(self.last_seq),
        }


class _Conn(asyncio.Protocol):
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False
        self.token = ""
        self.frag: list[bytes] = []
        self.frag_op = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self._abort()
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[: end + 4]
            if not self._handshake(head):
                return
        out: list[bytes] = []
        self._frames(out)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _handshake(self, head: str) -> bool:
        assert self.transport is not None
        headers: dict[str, str] = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        auth = headers.get("authorization", "")
        key = headers.get("sec-websocket-key", "")
        if not auth.startswith("Bearer ") or not key:
            self.transport.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()
            return False
        self.token = auth[7:]
        accept = websocket_accept(key.encode()).decode()
        self.transport.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        self.open = True
        self.server.stats.connections += 1
        welcome = {
            "type": "welcome",
            "vehicle_id": self.token,
            "last_seq": self.server.stats.last_seq.get(self.token, 0),
            "server_time": _utc_now(),
        }
        self.transport.write(encode_frame(_OP_TEXT, orjson.dumps(welcome)))
        return True

    def _frames(self, out: list[bytes]) -> None:
        buf = self.buf
        pos = 0
        end = len(buf)
        while end - pos >= 6:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            hdr = 2
            if n == 126:
                if end - pos < 8:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                hdr = 4
            elif n == 127:
                if end - pos < 14:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            masked = b1 & 0x80
            start = pos + hdr + (4 if masked else 0)
            if end < start + n:
                break
            payload = bytes(buf[start : start + n])
            if masked:
                payload = apply_mask(payload, bytes(buf[start - 4 : start]))
            pos = start + n
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode == _OP_CONT or (opcode in (_OP_TEXT, _OP_BINARY) and not fin):
                if opcode != _OP_CONT:
                    self.frag_op = opcode
                self.frag.append(payload)
                if not fin:
                    continue
                payload = b"".join(self.frag)
                self.frag = []
                opcode = self.frag_op
            if opcode in (_OP_TEXT, _OP_BINARY):
                self._message(payload, out)
            elif opcode == _OP_PING:
                out.append(encode_frame(_OP_PONG, payload))
            elif opcode == _OP_CLOSE:
                out.append(encode_frame(_OP_CLOSE, payload[:2]))
                if self.transport is not None:
                    self.transport.write(b"".join(out))
                    out.clear()
                    self.transport.close()
                del buf[:pos]
                return
        del buf[:pos]

    def _message(self, payload: bytes, out: list[bytes]) -> None:
        server = self.server
        stats = server.stats
        stats.frames += 1
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            out.append(encode_frame(_OP_TEXT, b'{"type":"error","code":"bad_json"}'))
            return
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "batch":
            items = obj.get("items")
            if not isinstance(items, list):
                return
        elif kind in ("telemetry", "event"):
            items = [obj]
        elif kind == "intervention_ack":
            status = str(obj.get("status"))
            stats.intervention_acks[status] = stats.intervention_acks.get(status, 0) + 1
            return
        else:
            out.append(encode_frame(_OP_TEXT, b'{"type":"error","code":"unknown_type"}'))
            return
        last = stats.last_seq.get(self.token, 0)
        top = last
        for item in items:
            seq = item.get("seq") if isinstance(item, dict) else None
            if not isinstance(seq, int):
                continue
            if seq <= top:
                stats.duplicates += 1
                continue
            if seq != top + 1:
                stats.gaps += 1
            top = seq
            stats.items += 1
            if item.get("type") == "event":
                stats.events += 1
                if server.intervene_every and stats.events % server.intervene_every == 0:
                    out.append(encode_frame(_OP_TEXT, server.intervention(seq, item)))
        stats.last_seq[self.token] = top
        ack = b'{"type":"ack","seq":%d}' % top
        out.append(bytes((0x81, len(ack))) + ack)


class FakeServer:
    """Holds the shared state of all fake-server connections."""

    def __init__(self, intervene_every: int = 0) -> None:
        self.stats = FakeServerStats()
        self.intervene_every = intervene_every
        self._ids = 0

    def protocol(self) -> _Conn:
        return _Conn(self)

    def intervention(self, seq: int, item: dict[str, Any]) -> bytes:
        self._ids += 1
        self.stats.interventions_sent += 1
        return orjson.dumps(
            {
                "type": "intervention",
                "id": f"fake-{self._ids}",
                "severity": "severe" if item.get("level") == 2 else "moderate",
                "action": "voice_alert",
                "message": f"{item.get('kind')} detected",
                "cause": {"seq": seq, "kind": item.get("kind")},
                "issued_at": _utc_now(),
            }
        )


async def serve(host: str, port: int, intervene_every: int = 0) -> None:
    server = FakeServer(intervene_every)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(server.protocol, host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake server listening on {host}:{port}", file=sys.stderr, flush=True)
    last = 0
    t0 = time.perf_counter()
    async with srv:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
            now = time.perf_counter()
            rate = (server.stats.frames - last) / (now - t0)
            last, t0 = server.stats.frames, now
            print(f"frames/s {rate:,.0f} {server.stats.as_dict()}", file=sys.stderr, flush=True)
    print(orjson.dumps(server.stats.as_dict()).decode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--intervene-every", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, args.intervene_every))
    except ImportError:  # pragma: no cover
        asyncio.run(serve(args.host, args.port, args.intervene_every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
