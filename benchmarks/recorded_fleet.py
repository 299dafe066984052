"""Recorded fleet: the simulator's units rendered ahead, played back by lean sockets.

Phase (c) of ``ingest.py`` asks how the server serves 5,000 units at 1 Hz. Played by
the simulator itself, those units cost this 2-core machine about 0.75 of a core
(generating items, the websockets machinery, bookkeeping per frame), taken from the
server they measure; real units cost the server's machine nothing. Here the same
simulator code (``VehicleSim``: same seeds, routes, tires, faults, events and crash
draws) renders every item of the phase *before* it starts, and one event loop then
only writes pre-encoded frames on schedule, reads acks and interventions, and answers
interventions as the simulator's units do (``delivered`` at once, ``played`` after
1–3 s, ``driver_confirmed`` for most moderate and severe ones). Each item is stamped
with the time it is sent (``ts``) and numbered after the ``welcome``'s ``last_seq``.

    python benchmarks/recorded_fleet.py render --tokens T.csv --duration 60 --out F
    python benchmarks/recorded_fleet.py play F --url ws://... --warmup 15 --drain 10

``play`` prints the summary keys of ``telematics simulate`` that ``ingest.py`` merges
(and ``--samples FILE`` writes the latency samples), plus its own CPU while playing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import marshal
import random
import resource
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from telematics.ingest.looplag import LoopMonitor
from telematics.sim.clock import format_ts
from telematics.sim.fleet import read_tokens, tire_faults
from telematics.sim.link import masked_text_frame
from telematics.sim.stats import FleetStats
from telematics.sim.unit import CONFIRM_PROBABILITY
from telematics.sim.vehicle import VehicleSim
from telematics.spread import spread

perf_counter = time.perf_counter
WELCOME_TIMEOUT_S = 15.0  # as the simulator's units: no welcome by then, dial again
CLOCK_RESOLUTION_S = 0.001  # uvloop's loop.time() and timers: whole milliseconds
_PONG_EMPTY = bytes([0x8A, 0x80, 0, 0, 0, 0])  # masked pong, zero mask, no payload
CLOSE_FRAME = bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])  # masked close 1000, zero mask

# One unit's recording: (vehicle id, token, first item's offset in s, items), each item
# (head, tail, is_event): the frame is head + seq + ',"ts":"' + ts + '"' + tail.
Recording = tuple[str, str, float, list[tuple[bytes, bytes, bool]]]


def upgrade_request(host: str, port: int, token: str, key: bytes) -> bytes:
    """A unit's WebSocket upgrade to ``/v1/device``, written by hand (lean clients)."""
    key_b64 = base64.b64encode(key).decode()
    return (
        f"GET /v1/device HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key_b64}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


def split_item(item: dict[str, Any]) -> tuple[bytes, bytes, bool]:
    rest = {k: v for k, v in item.items() if k not in ("type", "seq", "ts")}
    body = orjson.dumps(rest)
    head = b'{"type":"' + item["type"].encode() + b'","seq":'
    tail = b"}" if body == b"{}" else b"," + body[1:]
    return head, tail, item["type"] == "event"


class _Clock:
    """The simulator's clock while rendering: the time each reading is planned for."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def render(
    tokens: str,
    duration: float,
    rate: float,
    connect_rate: float,
    seed: int,
    event_interval: tuple[float, float] | None,
    fault_fraction: float,
    base: float | None = None,
    items_per_unit: int | None = None,
) -> list[Recording]:
    """Every unit's items for ``duration`` seconds, as the simulator generates them.

    Unit i connects at i / connect_rate and reads at a random phase within its first
    period, then every 1 / rate s until ``duration``, like ``telematics simulate``."""
    specs = read_tokens(tokens)
    faults = tire_faults(len(specs), fault_fraction, seed)
    base = time.time() if base is None else base  # the fleet's clock at the start
    dt = 1.0 / rate
    out: list[Recording] = []
    for i, spec in enumerate(specs):
        phase = random.Random(f"{seed}:{spec.vehicle_id}:phase").uniform(0.0, dt)
        first = 0.0 if items_per_unit else i / connect_rate + phase
        clock = _Clock(base)  # built at the start, as the simulator builds its units
        sim = VehicleSim(
            spec.vehicle_id,
            spec.vehicle_class,
            seed,
            unit_index=i,
            event_interval_s=event_interval,
            tire_fault=faults.get(i, False),
            clock=clock,
        )
        items: list[tuple[bytes, bytes, bool]] = []
        k = 0
        while (k < items_per_unit) if items_per_unit else (first + k * dt < duration):
            # flood mode generates as fast as acks come: its readings all carry about
            # the same wall time, as in the simulator
            clock.now = base + (0.0 if items_per_unit else first + k * dt)
            items += [split_item(item) for item in sim.step(dt)]
            k += 1
        out.append((spec.vehicle_id, spec.token, first, items))
    return out


#: Width of the windows the steady phase's latencies are also reported by (``by_window``).
WINDOW_S = 10.0


class Fleet(FleetStats):
    """The simulator's fleet counters and latency samples, and what only a player has."""

    def __init__(self) -> None:
        super().__init__()
        self.generating = True  # False: send nothing new, only take the last acks
        self.items_rewound = 0  # flood units that ran out of rendered items and started over
        self.timer_wakes = 0  # paced units woken by their next item's timer
        # Every steady latency with its window (perf_counter from the end of the warm-up):
        # a p99 over the whole phase hides when the slow ones came (a transient at the
        # start, or spread out).
        self.steady_at: float | None = None
        self.ack_by_window: list[tuple[int, float]] = []
        self.event_by_window: list[tuple[int, float]] = []

    def start_steady(self) -> None:
        super().start_steady()
        self.steady_at = perf_counter()

    def by_window(self) -> dict[str, list[float]]:
        """p99 in ms of each ``WINDOW_S`` of the steady phase, acks and interventions."""
        out = {}
        for name, samples in (("ack", self.ack_by_window), ("event", self.event_by_window)):
            windows: dict[int, list[float]] = {}
            for window, latency in samples:
                windows.setdefault(window, []).append(latency)
            out[f"{name}_p99_ms"] = [
                round(spread(windows.get(w, ()), digits=4)["p99"] * 1000, 1)
                for w in range(max(windows, default=-1) + 1)
            ]
        return out

    def window_of(self, now: float) -> int:
        return -1 if self.steady_at is None else int((now - self.steady_at) // WINDOW_S)


class PlayedUnit(asyncio.Protocol):
    """One unit's connection: handshake, then its recorded items on schedule."""

    def __init__(
        self,
        rec: Recording,
        fleet: Fleet,
        loop: asyncio.AbstractEventLoop,
        t0: float,
        rate: float,
        window: int,
        host: str,
        port: int,
        flood_batch: int = 0,
    ) -> None:
        self.vehicle_id, token, self.first, self.items = rec
        self.fleet, self.loop, self.t0, self.dt, self.window = fleet, loop, t0, 1.0 / rate, window
        self.host, self.port = host, port
        self.flood_batch = flood_batch  # > 0: frames of this many items, as fast as acked
        self.rng = random.Random(f"{self.vehicle_id}:net")
        self.upgrade = upgrade_request(host, port, token, self.rng.randbytes(16))
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.welcomed = False
        self.lost_reason = ""  # why this side dropped the connection, if it did
        self.give_up: asyncio.TimerHandle | None = None  # no welcome in time: hang up
        self.base_seq = -1  # last_seq from the welcome; -1 until welcomed
        self.next_k = 0  # next item to send
        # per frame in flight: its last seq, when it was sent, how many items it holds
        self.inflight: deque[tuple[int, float, int]] = deque()
        self.event_sent: dict[int, float] = {}
        self.seen: set[str] = set()
        self.stopped = False
        self.waking = False  # a timer is set for the next item's due time

    # -- connection ------------------------------------------------------------------
    def dial(self) -> None:
        self.loop.create_task(self._dial())

    async def _dial(self) -> None:
        try:
            await self.loop.create_connection(lambda: self, self.host, self.port)
        except OSError as exc:
            self.failed(type(exc).__name__)

    def failed(self, reason: str) -> None:
        """Count a failed connect or a lost link; dial again a moment later, as units do."""
        self.fleet.count_connect_error(reason)
        if not self.stopped:
            self.loop.call_later(self.rng.uniform(1.0, 5.0), self.dial)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but writes like one
        self.transport = transport  # type: ignore[assignment]
        self.buf, self.upgraded, self.welcomed, self.lost_reason = b"", False, False, ""
        transport.write(self.upgrade)  # type: ignore[attr-defined]
        self.give_up = self.loop.call_later(WELCOME_TIMEOUT_S, self.hang_up, "no_welcome")

    def hang_up(self, reason: str) -> None:
        """Drop this connection (``connection_lost`` counts it and dials again)."""
        if self.transport is not None:
            self.lost_reason = reason
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.give_up is not None:
            self.give_up.cancel()
        self.transport = None
        if not self.stopped:
            self.failed(self.lost_reason or ("lost" if self.welcomed else "lost_before_welcome"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.hang_up("http_" + buf[9:12].decode(errors="replace"))
                return
            self.upgraded = True
            buf = buf[end + 4 :]
        pos, n = 0, len(buf)
        while n - pos >= 2:
            first, size = buf[pos], buf[pos + 1] & 0x7F
            start = pos + 2
            if size == 126:
                if n - start < 2:
                    break
                size, start = int.from_bytes(buf[start : start + 2], "big"), start + 2
            elif size == 127:
                if n - start < 8:
                    break
                size, start = int.from_bytes(buf[start : start + 8], "big"), start + 8
            if n - start < size:
                break
            payload = buf[start : start + size]
            pos = start + size
            opcode = first & 0x0F
            if opcode == 1:
                self.on_message(payload)
            elif opcode == 9 and self.transport is not None:  # ping: pong with its payload
                pong = bytes([0x8A, 0x80 | len(payload), 0, 0, 0, 0]) + payload
                self.transport.write(pong if payload else _PONG_EMPTY)
            elif opcode == 8:
                self.close()
                return
        self.buf = buf[pos:]

    def close(self) -> None:
        self.stopped = True
        if self.transport is not None:
            self.transport.write(CLOSE_FRAME)
            self.transport.close()

    # -- server messages -------------------------------------------------------------
    def on_message(self, raw: bytes) -> None:
        msg = orjson.loads(raw)
        kind = msg.get("type")
        fleet = self.fleet
        if kind == "ack":
            now = perf_counter()
            seq, inflight = msg["seq"], self.inflight
            window = fleet.window_of(now)
            while inflight and inflight[0][0] <= seq:
                _, sent, n = inflight.popleft()
                fleet.items_acked += n
                fleet.ack_latency_s.add(now - sent)
                if window >= 0:
                    fleet.ack_by_window.append((window, now - sent))
            self.send_due()
        elif kind == "welcome":
            last_seq = int(msg.get("last_seq") or 0)
            self.welcomed = True
            if self.give_up is not None:
                self.give_up.cancel()
            if self.base_seq < 0:
                self.base_seq = last_seq
                fleet.ever_connected += 1
            else:  # back after a lost link: what the server lacks is sent again
                fleet.items_acked += sum(n for seq, _, n in self.inflight if seq <= last_seq)
                self.inflight.clear()
                self.next_k = last_seq - self.base_seq
            self.send_due()
        elif kind == "intervention":
            self.on_intervention(msg)
        elif kind == "error":
            code = str(msg.get("code"))
            fleet.count_error(code)

    def on_intervention(self, msg: dict[str, Any]) -> None:
        ident = msg["id"]
        self.ack_intervention(ident, "delivered")
        if ident in self.seen:
            return
        now = perf_counter()
        self.seen.add(ident)
        self.fleet.interventions_received += 1
        sent = self.event_sent.get((msg.get("cause") or {}).get("seq", -1))
        if sent is not None:
            self.fleet.event_to_intervention_s.add(now - sent)
            window = self.fleet.window_of(now)
            if window >= 0:
                self.fleet.event_by_window.append((window, now - sent))
        played = self.rng.uniform(1.0, 3.0)
        self.loop.call_later(played, self.ack_intervention, ident, "played")
        if (
            msg.get("severity") in ("severe", "moderate")
            and self.rng.random() < CONFIRM_PROBABILITY
        ):
            confirmed = played + self.rng.uniform(2.0, 8.0)
            self.loop.call_later(confirmed, self.ack_intervention, ident, "driver_confirmed")

    def ack_intervention(self, ident: str, status: str) -> None:
        if self.transport is None:
            return
        payload = orjson.dumps({"type": "intervention_ack", "id": ident, "status": status})
        self.transport.write(masked_text_frame(payload))
        self.fleet.count_intervention_ack(status)

    # -- sending ---------------------------------------------------------------------
    def wake(self) -> None:
        self.waking = False
        self.fleet.timer_wakes += 1
        self.send_due()

    def send_due(self) -> None:
        """Send every item due by now while the window allows; wake at the next one."""
        if not self.welcomed or self.transport is None or self.stopped:
            return
        if self.flood_batch:
            self.send_flood()
            return
        # uvloop's clock moves in whole milliseconds and a timer less than 1 ms away
        # fires on the next turn, before the clock has moved: an item due within that
        # millisecond went on re-arming its timer, ~140 turns per item (a busy loop that
        # took most of the player's CPU). Such an item is sent now, at most 1 ms early.
        horizon = self.loop.time() + CLOCK_RESOLUTION_S
        items, fleet = self.items, self.fleet
        while self.next_k < len(items) and len(self.inflight) < self.window:
            due = self.t0 + self.first + self.next_k * self.dt
            if due > horizon:
                if not self.waking:
                    self.waking = True
                    self.loop.call_at(due, self.wake)
                return
            head, tail, is_event = items[self.next_k]
            self.next_k += 1
            seq = self.base_seq + self.next_k
            ts = format_ts(time.time())
            payload = b'%b%d,"ts":"%b"%b' % (head, seq, ts.encode(), tail)
            self.transport.write(masked_text_frame(payload))
            sent = perf_counter()
            self.inflight.append((seq, sent, 1))
            fleet.items_sent += 1
            fleet.frames_sent += 1
            if is_event:
                self.event_sent[seq] = sent
                fleet.events_sent += 1

    def send_flood(self) -> None:
        """Frames of ``flood_batch`` items while the window allows (flood mode)."""
        items, fleet, transport = self.items, self.fleet, self.transport
        assert transport is not None
        while len(self.inflight) < self.window and fleet.generating:
            ts = format_ts(time.time()).encode()
            parts, events = [], []
            for _ in range(self.flood_batch):
                head, tail, is_event = items[self.next_k % len(items)]
                if self.next_k and self.next_k % len(items) == 0:
                    fleet.items_rewound += 1
                self.next_k += 1
                seq = self.base_seq + self.next_k
                parts.append(b'%b%d,"ts":"%b"%b' % (head, seq, ts, tail))
                if is_event:
                    events.append(seq)
            n = len(parts)
            payload = (
                parts[0] if n == 1 else b'{"type":"batch","items":[' + b",".join(parts) + b"]}"
            )
            transport.write(masked_text_frame(payload))
            sent = perf_counter()
            self.inflight.append((seq, sent, n))
            fleet.items_sent += n
            fleet.frames_sent += 1
            fleet.events_sent += len(events)
            for event_seq in events:
                self.event_sent[event_seq] = sent


async def play(
    recordings: list[Recording],
    url: str,
    rate: float,
    window: int,
    warmup_s: float,
    drain_s: float,
    connect_rate: float,
    flood_batch: int = 0,
    flood_s: float = 0.0,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    fleet = Fleet()
    loop.call_later(warmup_s, fleet.start_steady)  # latencies count from here, as simulated
    monitor = LoopMonitor()
    watching = asyncio.create_task(monitor.run())
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), loop.time()
    units: list[PlayedUnit] = []

    for i, rec in enumerate(recordings):
        unit = PlayedUnit(rec, fleet, loop, t0, rate, window, host, port, flood_batch)
        units.append(unit)
        loop.call_at(t0 + i / connect_rate, unit.dial)
    end = t0 + max((r[2] + len(r[3]) / rate for r in recordings), default=0.0)
    await asyncio.sleep(max(0.0, (t0 + flood_s if flood_batch else end) - loop.time()))
    fleet.generating = False
    fleet.end_steady()
    deadline = loop.time() + drain_s
    while any(u.inflight for u in units) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    fleet.finished_at = time.time()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for unit in units:
        unit.close()
    await asyncio.sleep(0.5)  # the closes go out
    watching.cancel()
    watched = monitor.snapshot()
    fleet.loop_lag_ms = watched["loop_lag_ms"]
    return {
        "gc_pause_total_ms": sum(watched["gc_pause_total_ms_by_generation"]),
        "by_window": fleet.by_window(),
        **fleet.snapshot(),
        "unacked_items": sum(len(u.inflight) for u in units),  # the units hold no outboxes
        "items_never_sent": sum(max(0, len(u.items) - u.next_k) for u in units),
        "units_rewound": fleet.items_rewound,
        "timer_wakes": fleet.timer_wakes,
        "cpu_s_while_playing": round(
            cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2
        ),
        "samples": fleet.latency_samples(),
    }


def _interval(text: str) -> tuple[float, float]:
    a, b = (float(x) for x in text.split(","))
    return a, b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("render", help="render the fleet's items to a file")
    rec.add_argument("--tokens", required=True)
    rec.add_argument("--duration", type=float, required=True)
    rec.add_argument("--out", required=True)
    rec.add_argument("--seed", type=int, default=1)
    rec.add_argument(
        "--event-interval",
        type=_interval,
        default=None,
        help="A,B: an event every uniform(A,B) s (default: per driving hour)",
    )
    rec.add_argument(
        "--items-per-unit",
        type=int,
        default=None,
        help="flood mode: render this many readings per unit",
    )
    rec.add_argument("--tire-faults", type=float, default=0.02, help="share of faulty units")
    pl = sub.add_parser("play", help="play a rendered fleet against a server")
    pl.add_argument("recording")
    pl.add_argument("--url", required=True)
    pl.add_argument("--warmup", type=float, default=15.0)
    pl.add_argument("--drain", type=float, default=10.0)
    pl.add_argument("--window", type=int, default=8)
    pl.add_argument("--samples", help="write the latency samples here (JSON)")
    pl.add_argument(
        "--flood-batch",
        type=int,
        default=0,
        help="flood mode: frames of N items, as fast as the window allows",
    )
    pl.add_argument("--flood-seconds", type=float, default=0.0, help="flood mode: for S s")
    for p in (rec, pl):
        p.add_argument("--rate", type=float, default=1.0)
        p.add_argument("--connect-rate", type=float, default=500.0)
    args = parser.parse_args()
    if args.command == "render":
        recordings = render(
            args.tokens,
            args.duration,
            args.rate,
            args.connect_rate,
            args.seed,
            args.event_interval,
            args.tire_faults,
            items_per_unit=args.items_per_unit,
        )
        Path(args.out).write_bytes(marshal.dumps(recordings))
        return 0
    import uvloop

    recordings = marshal.loads(Path(args.recording).read_bytes())
    # The player's own pauses are in every latency it measures. Left to the collector,
    # one (c) phase had 84 collections and 560 ms of pauses (up to 80 ms each), walking
    # the ~400,000 recorded items: they are frozen out of it, and the player makes
    # almost no reference cycles, so it collects nothing while playing.
    gc.collect()
    gc.freeze()
    gc.disable()
    summary = uvloop.run(
        play(
            recordings,
            args.url,
            args.rate,
            args.window,
            args.warmup,
            args.drain,
            args.connect_rate,
            args.flood_batch,
            args.flood_seconds,
        )
    )
    samples = summary.pop("samples")
    if args.samples:
        Path(args.samples).write_bytes(orjson.dumps(samples))
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
