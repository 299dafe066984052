"""One in-vehicle unit: a WebSocket connection, its outbox and the protocol behaviour.

A unit boots on its first connection (the ``welcome``'s ``last_seq`` fixes where its
numbering continues, as a real unit keeps ``seq`` across reboots), then generates
readings at ``rate_hz`` (or as fast as its window allows in flood mode) whether or not
it is connected, sends frames while fewer than ``window`` are unacknowledged, replays
what the server lacks after every reconnect, answers interventions and drops its
connection now and then to exercise the server's resume path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from telematics.sim.config import SimConfig, UnitSpec
from telematics.sim.link import UnitConnection, write_frame, write_now
from telematics.sim.outbox import MAX_BATCH_ITEMS, Frame, Outbox
from telematics.sim.pacer import Pacer
from telematics.sim.stats import FleetStats
from telematics.sim.vehicle import VehicleSim

log = logging.getLogger("telematics.sim")
perf_counter = time.perf_counter  # latency clock (uvloop's loop.time() has 1 ms resolution)

WELCOME_TIMEOUT_S = 15.0
MAX_FAILURE_BACKOFF_S = 60.0
RATE_LIMIT_PAUSE_S = 1.0
CONFIRM_PROBABILITY = 0.6  # drivers confirm ~60 % of moderate/severe interventions
_MAX_EVENT_TIMES = 4096
_MAX_SEEN_INTERVENTIONS = 1024
_MAX_PENDING_CONTROL = 256


class Unit:
    """A simulated in-vehicle unit; :meth:`run` until cancelled."""

    def __init__(
        self,
        spec: UnitSpec,
        index: int,
        config: SimConfig,
        stats: FleetStats,
        *,
        pacer: Pacer,
        tire_fault: bool | str = False,
    ) -> None:
        self.spec = spec
        self.index = index
        self.cfg = config
        self.stats = stats
        self.sim = VehicleSim(
            spec.vehicle_id,
            spec.vehicle_class,
            config.seed,
            unit_index=index,
            tire_interval_s=config.tire_interval_s,
            event_interval_s=config.event_interval_s,
            tire_fault=tire_fault,
        )
        self.outbox = Outbox(cap=config.max_buffer)
        stats.register_outbox(spec.vehicle_id, self.outbox)
        self.rng = random.Random(f"{config.seed}:{spec.vehicle_id}:net")
        self._dt = 1.0 / config.rate_hz
        self._pacer = pacer
        self._headers = {"Authorization": f"Bearer {spec.token}", **config.extra_headers}
        self._ws: UnitConnection | None = None
        self._welcome: asyncio.Future[None] | None = None
        self._waiting_for: UnitConnection | None = None  # a backed-up link being drained
        self._welcomed = False
        self._connections = 0
        self._paused_until = 0.0
        self._event_sent_at: dict[int, float] = {}
        self._recent_frames: deque[tuple[int, int, float]] = deque(maxlen=512)
        self._seen_interventions: dict[str, None] = {}
        self._pending_control: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._drop_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False  # set when the fleet stops: generate and send nothing more
        self.draining = False  # set before stopping: generate nothing, still send and take acks

    # -- life cycle ------------------------------------------------------------------

    async def run(self, start_delay: float = 0.0) -> None:
        """Connect (after ``start_delay``), generate and send until cancelled."""
        loop = self._loop = asyncio.get_running_loop()
        if start_delay > 0:
            await asyncio.sleep(start_delay)
        self._pacer.add(self._tick, loop.time() + self.rng.uniform(0.0, self._dt))
        failures = 0
        try:
            while True:
                ok = await self._session()
                if ok:
                    failures = 0
                    lo, hi = self.cfg.reconnect_delay_s
                    delay = self.rng.uniform(lo, hi)
                else:
                    failures += 1
                    lo, hi = self.cfg.reconnect_delay_s
                    cap = min(MAX_FAILURE_BACKOFF_S, max(hi, 1.0) * 2 ** min(failures - 1, 6))
                    delay = self.rng.uniform(max(lo, cap / 2), cap)
                await asyncio.sleep(delay)
        finally:
            self.stopping = True  # the pacer drops the unit at its next tick
            for task in list(self._tasks):
                task.cancel()
            self._cancel_drop()

    def drain(self) -> None:
        """Generate nothing more; send what is held (a short last batch too), take acks."""
        self.draining = True
        self._pump()

    def abort(self) -> None:
        """Drop the connection at once (used when stopping takes too long)."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    async def _session(self) -> bool:
        """One connection, from connect to close; False if it never got a welcome."""
        stats = self.stats
        try:
            ws = await connect(
                self.cfg.url,
                additional_headers=self._headers,
                compression=None,
                open_timeout=self.cfg.open_timeout_s,
                ping_interval=20.0,
                ping_timeout=60.0,
                close_timeout=2.0,
                max_size=2**22,
                max_queue=64,
                user_agent_header="telematics-sim/0.1",
                proxy=None,
                create_connection=UnitConnection,
            )
        except InvalidStatus as exc:
            stats.connect_failures += 1
            stats.count_connect_error(f"http_{exc.response.status_code}")
            return False
        except (OSError, TimeoutError, ConnectionClosed) as exc:
            stats.connect_failures += 1
            stats.count_connect_error(type(exc).__name__)
            log.debug("%s: connect failed: %r", self.spec.vehicle_id, exc)
            return False
        except Exception as exc:  # e.g. InvalidHandshake from a misbehaving server
            stats.connect_failures += 1
            stats.count_connect_error(type(exc).__name__)
            log.warning("%s: connect failed: %r", self.spec.vehicle_id, exc)
            return False
        assert isinstance(ws, UnitConnection)
        self._ws = ws
        welcome = self._welcome = asyncio.get_running_loop().create_future()
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            ws.attach(self._handle)  # frames are handled as they arrive, see link.py
            await asyncio.wait(
                (welcome, closed), timeout=WELCOME_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
            if welcome.done():
                await closed
            elif not closed.done():
                log.debug("%s: no welcome within %.0f s", self.spec.vehicle_id, WELCOME_TIMEOUT_S)
        finally:
            closed.cancel()
            self._welcome = None
            self._ws = None
            self._cancel_drop()
            if self._welcomed:
                self._welcomed = False
                stats.connected -= 1
            if ws.state is not State.CLOSED:
                # close politely (bounded by close_timeout), even while being cancelled
                with contextlib.suppress(Exception):
                    await asyncio.shield(ws.close())
        return welcome.done()

    # -- generating and sending ------------------------------------------------------

    def _generate(self, steps: int) -> None:
        stats = self.stats
        outbox = self.outbox
        sim = self.sim
        dt = self._dt
        dropped = outbox.dropped
        for _ in range(steps):
            for item in sim.step(dt):
                outbox.add(item)
                stats.items_generated += 1
                if item["type"] == "event":
                    stats.events_generated += 1
        if outbox.dropped != dropped:
            stats.items_dropped += outbox.dropped - dropped

    def _tick(self) -> bool:
        """One reading, called by the pacer once a period; False once stopping.

        In flood mode only while offline (online, the pump generates as acks come).
        """
        if self.stopping:
            return False
        flood = self.cfg.flood
        if self.draining or not self.outbox.started or (flood and self._welcomed):
            return True
        self._generate(1)
        if not flood and self._welcomed:
            self._pump()
        return True

    def _pump(self) -> None:
        """Send frames while the window allows (generating them in flood mode).

        Never waits: a backed-up link hands over to :meth:`_pump_when_drained`.
        """
        ws = self._ws
        if ws is None or not self._welcomed or self.stopping or self._waiting_for is ws:
            return
        loop = self._loop
        assert loop is not None
        outbox = self.outbox
        cfg = self.cfg
        batch = cfg.batch_size
        window = cfg.window
        flood = cfg.flood
        backlog = 4 * batch + 4
        while outbox.inflight < window and not self.stopping:
            if self._paused_until:
                if loop.time() < self._paused_until:
                    return
                self._paused_until = 0.0
            unsent = outbox.unsent
            if unsent < batch:
                if self.draining:  # nothing more will come: send the rest as it is
                    if unsent == 0:
                        return
                elif flood:
                    self._generate(batch - unsent)
                    unsent = outbox.unsent
                elif unsent == 0 or not outbox.has_unsent_event():
                    return
            if not ws.writable():
                if ws.protocol.state is State.OPEN:
                    self._waiting_for = ws
                    self._spawn(self._pump_when_drained(ws))
                return
            frame = outbox.take_frame(
                MAX_BATCH_ITEMS if unsent > backlog else batch, perf_counter()
            )
            if frame is None:
                return
            self._sent(frame)
            write_frame(ws, frame.payload)  # writable: checked above

    async def _pump_when_drained(self, ws: UnitConnection) -> None:
        try:
            await ws.drain()
        finally:
            if self._waiting_for is ws:
                self._waiting_for = None
        self._pump()

    def _sent(self, frame: Frame) -> None:
        stats = self.stats
        stats.frames_sent += 1
        stats.bytes_sent += len(frame.payload)
        stats.items_sent += frame.new_items
        stats.items_resent += frame.items - frame.new_items
        now = perf_counter()
        if frame.event_seqs:
            times = self._event_sent_at
            fresh_after = frame.last_seq - frame.new_items  # higher seqs are sent the first time
            for seq in frame.event_seqs:
                times[seq] = now
                if seq > fresh_after:
                    stats.events_sent += 1
            while len(times) > _MAX_EVENT_TIMES:
                del times[next(iter(times))]
        self._recent_frames.append((frame.first_seq, frame.last_seq, now))

    def _sent_time(self, seq: int) -> float | None:
        t = self._event_sent_at.get(seq)
        if t is not None:
            return t
        for first, last, sent in reversed(self._recent_frames):
            if first <= seq <= last:
                return sent
        return None

    # -- server frames ---------------------------------------------------------------

    def _handle(self, raw: bytes) -> None:
        """One message from the server, called from the link's ``data_received``."""
        stats = self.stats
        stats.frames_received += 1
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            stats.unknown_frames += 1
            return
        if not isinstance(msg, dict):
            stats.unknown_frames += 1
            return
        kind = msg.get("type")
        try:
            if kind == "ack":
                seq = msg.get("seq")
                if type(seq) is not int:
                    stats.unknown_frames += 1
                    return
                result = self.outbox.ack(seq, perf_counter())
                stats.acks_received += 1
                stats.items_acked += result.acked
                for latency in result.latencies:
                    stats.ack_latency_s.add(latency)
                self._pump()
            elif kind == "welcome":
                self._on_welcome(msg)
            elif kind == "intervention":
                self._on_intervention(msg)
            elif kind == "error":
                code = msg.get("code")
                code = code if isinstance(code, str) and code else "unknown"
                stats.count_error(code)
                if code == "rate_limited":
                    self._pause(RATE_LIMIT_PAUSE_S)
            else:
                stats.unknown_frames += 1
        except Exception:  # a frame we did not expect must never kill the unit
            stats.unknown_frames += 1
            log.warning("%s: cannot handle %r", self.spec.vehicle_id, raw[:200], exc_info=True)

    def _on_welcome(self, msg: dict[str, Any]) -> None:
        last_seq = msg.get("last_seq")
        if type(last_seq) is not int or last_seq < 0:
            last_seq = 0
        stats = self.stats
        stats.items_acked += self.outbox.welcome(last_seq)
        if not self._welcomed:
            self._welcomed = True
            stats.connected += 1
            self._connections += 1
            if self._connections == 1:
                stats.ever_connected += 1
            else:
                stats.reconnects += 1
            self._schedule_drop()
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_result(None)
        pending, self._pending_control = self._pending_control, []
        for payload in pending:
            self._send_control(payload)
        self._pump()

    def _on_intervention(self, msg: dict[str, Any]) -> None:
        ident = msg.get("id")
        if not isinstance(ident, str) or not ident:
            self.stats.unknown_frames += 1
            return
        stats = self.stats
        if ident in self._seen_interventions:
            stats.interventions_duplicate += 1
            self._ack_intervention(ident, "delivered")
            return
        now = perf_counter()
        self._seen_interventions[ident] = None
        if len(self._seen_interventions) > _MAX_SEEN_INTERVENTIONS:
            del self._seen_interventions[next(iter(self._seen_interventions))]
        stats.interventions_received += 1
        self._ack_intervention(ident, "delivered")
        cause = msg.get("cause")
        seq = cause.get("seq") if isinstance(cause, dict) else None
        if type(seq) is int:
            sent = self._sent_time(seq)
            if sent is not None:
                stats.event_to_intervention_s.add(now - sent)
        self._spawn(self._follow_up(ident, msg.get("severity")))

    async def _follow_up(self, ident: str, severity: object) -> None:
        await asyncio.sleep(self.rng.uniform(1.0, 3.0))
        self._ack_intervention(ident, "played")
        if severity in ("severe", "moderate") and self.rng.random() < CONFIRM_PROBABILITY:
            await asyncio.sleep(self.rng.uniform(2.0, 8.0))
            self._ack_intervention(ident, "driver_confirmed")

    def _ack_intervention(self, ident: str, status: str) -> None:
        payload = orjson.dumps({"type": "intervention_ack", "id": ident, "status": status})
        self.stats.count_intervention_ack(status)
        self._send_control(payload)

    def _send_control(self, payload: bytes) -> None:
        ws = self._ws
        if ws is not None and self._welcomed:
            if write_now(ws, payload):
                return
            if ws.protocol.state is State.OPEN:  # backed up: wait for the socket
                self._spawn(self._send_when_drained(ws, payload))
                return
        self._keep_control(payload)

    async def _send_when_drained(self, ws: UnitConnection, payload: bytes) -> None:
        try:
            await ws.send(payload, text=True)
        except ConnectionClosed:
            self._keep_control(payload)

    def _keep_control(self, payload: bytes) -> None:
        if len(self._pending_control) < _MAX_PENDING_CONTROL:
            self._pending_control.append(payload)  # sent after the next welcome

    # -- helpers ---------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pause(self, seconds: float) -> None:
        assert self._loop is not None
        self._paused_until = self._loop.time() + seconds
        self._loop.call_later(seconds, self._pump)

    def _schedule_drop(self) -> None:
        rate = self.cfg.drops_per_hour
        if rate <= 0 or self._loop is None:
            return
        delay = self.rng.expovariate(rate / 3600.0)
        self._drop_handle = self._loop.call_later(delay, self._force_drop, self._ws)

    def _cancel_drop(self) -> None:
        if self._drop_handle is not None:
            self._drop_handle.cancel()
            self._drop_handle = None

    def _force_drop(self, ws: UnitConnection | None) -> None:
        self._drop_handle = None
        if ws is not None and ws is self._ws:
            self.stats.forced_drops += 1
            ws.transport.abort()  # abrupt: no close frame, like losing the cell signal

    def force_drop(self) -> bool:
        """Drop the connection now (tests, demos); False if not connected."""
        if self._ws is None or not self._welcomed:
            return False
        self._cancel_drop()
        self._force_drop(self._ws)
        return True
