"""One unit's WebSocket connection: the I/O shell around DeviceSession and VehicleProcessor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMessage, WSMsgType, web

from telematics.classify.context import Graded
from telematics.ingest.feed import DeviceSocket
from telematics.ingest.ratelimit import TokenBucket
from telematics.pipeline import Observed, StorePlan, VehicleProcessor, iso_ms
from telematics.protocol.messages import Rejection
from telematics.protocol.session import DeviceSession, ack_payload, error_frame

if TYPE_CHECKING:
    from telematics.ingest.hub import Hub

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024  # protocol limit; larger frames close with 1009
KEEP_RAW_BYTES = 4 * 1024 * 1024  # larger than this is not even read (aiohttp closes 1009)
CLOSE_TOO_BIG = 1009
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


@dataclass(slots=True)
class Outstanding:
    frame: bytes
    last_sent: float  # monotonic
    issued: float  # monotonic


class DeviceConnection:
    def __init__(
        self,
        hub: Hub,
        ws: DeviceSocket,
        request: web.Request,
        session: DeviceSession,
        processor: VehicleProcessor,
        arrival: int = 0,
    ) -> None:
        self.hub = hub
        self.arrival = arrival  # when its upgrade request came in, among all (Hub.arrivals)
        self.ws = ws
        self.request = request
        # aiohttp's request.transport is a property chain, read twice per ack: kept here.
        # A lost connection's transport says so (is_closing), so holding it is safe.
        self.transport = request.transport
        self.session = session
        self.processor = processor
        self.vehicle_id = session.vehicle_id
        settings = hub.settings
        self.bucket = TokenBucket(settings.max_frames_per_s, settings.frame_burst, time.monotonic())
        self.last_activity = time.monotonic()
        self.last_ping = self.last_activity
        self.outstanding: dict[str, Outstanding] = {}
        self.closed = False
        self._out: list[bytes] = []
        self._ack_due = 0  # highest committed seq not yet acked; one ack covers many plans
        self.draining = False  # a slow-peer task is sending (see flush_out)
        self._last_rate_warning = 0.0

    # -- receiving -------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            await self.ws.serve(self._frame_inline, self._message, lambda: self.closed)
        except ConnectionError:
            self.closed = True  # the peer went away mid-reply: nothing left to do

    async def _message(self, msg: WSMessage) -> bool:
        """One message taken through aiohttp; False once the connection is over."""
        self.last_activity = time.monotonic()
        kind = msg.type
        if kind is WSMsgType.TEXT:
            rest = self._frame(msg.data)
            self.hub.grading.grade_due()
            if rest is not None:
                await rest
        elif kind is WSMsgType.PING:
            await self.ws.pong(msg.data)
        elif kind is WSMsgType.PONG:
            pass
        elif kind is WSMsgType.BINARY:
            await self._reject_frame("bad_json", "frame: must be a text frame", msg.data)
        elif kind is WSMsgType.ERROR:
            await self._protocol_error(msg.data)
            return False
        else:  # CLOSE, CLOSING, CLOSED
            return False
        return not self.closed

    def _frame_inline(self, data: bytes) -> Awaitable[None] | None:
        """A text frame straight from the parser (inside aiohttp's ``data_received``)."""
        self.last_activity = time.monotonic()
        try:
            rest = self._frame(data)
        except Exception as exc:  # raised again in this connection's task (see device.py)
            return _raise(exc)
        self.hub.grading.grade_due()  # other frames' alarms that waited long enough
        return rest

    def _frame(self, data: bytes, rate_checked: bool = False) -> Awaitable[None] | None:
        """Handle one text frame as far as it goes without waiting; None if that was all,
        else what is left, to be awaited before the connection's next frame."""
        if len(data) > MAX_FRAME_BYTES:
            return self._too_big(data)
        if not rate_checked:
            wait = self.bucket.take(time.monotonic())
            if wait > 0:
                return self._frame_slowly(data, wait)
        now = self.hub.clock()
        inbound = self.session.receive(data, now)
        for reply in inbound.replies:
            self.post(reply)
        for ack in inbound.intervention_acks:
            self.outstanding.pop(ack.id, None)
        self.hub.stats.count_inbound(inbound)
        rest: Awaitable[None] | None = None
        if inbound.items or inbound.rejected or inbound.intervention_acks:
            processor = self.processor
            observed = processor.observe(
                inbound.items, inbound.rejected, inbound.intervention_acks, now
            )
            inputs = observed.inputs
            graded = self.hub.grading.grade_now(inputs) if inputs else []
            if graded is None:  # a model grades: with other connections' alarms, this turn
                return self._graded_soon(observed, now, inbound.close_code)
            rest = self._store(observed, graded, now)
        if inbound.close_code is not None:
            return self._close_after(rest, inbound.close_code)
        return rest

    def _store(
        self, observed: Observed, graded: list[Graded], now: datetime
    ) -> Awaitable[None] | None:
        """Finish the frame's plan, act in the cab, queue it for the writer (or wait for
        room in its backlog: returned)."""
        plan = self.processor.finish(observed, graded, now)
        if plan.interventions:
            self.intervene(plan)
        writer = self.hub.writer
        if writer.offer(plan, self.committed):
            return None
        return writer.submit(plan, self.committed)  # backlog full: wait for room

    def _graded_soon(
        self, observed: Observed, now: datetime, close_code: int | None
    ) -> Awaitable[None]:
        """Queue the frame's alarms for the model's next micro-batch; the grading call
        itself finishes the frame (its interventions go out in the turn it grades them),
        and this unit's next frame waits for that."""
        finished: asyncio.Future[Awaitable[None] | None] = (
            asyncio.get_running_loop().create_future()
        )

        def done(graded: list[Graded]) -> None:
            try:
                rest = self._store(observed, graded, now)
            except Exception as exc:  # raised again in this connection's task
                rest = _raise(exc)
            if not finished.done():
                finished.set_result(rest)
            elif asyncio.iscoroutine(rest):  # the task is gone (shutdown): nobody awaits it
                rest.close()

        def failed(exc: BaseException) -> None:
            if not finished.done():
                finished.set_exception(exc)

        self.hub.grading.grade_later(observed.inputs, done, failed)
        return self._after_grading(finished, close_code)

    async def _after_grading(
        self, finished: asyncio.Future[Awaitable[None] | None], close_code: int | None
    ) -> None:
        await self._close_after(await finished, close_code)

    async def _close_after(self, rest: Awaitable[None] | None, close_code: int | None) -> None:
        if rest is not None:
            await rest
        if close_code is not None:
            await self.close(close_code, "too many bad frames")

    async def _frame_slowly(self, data: bytes, wait: float) -> None:
        await self._slow_down(wait)
        rest = self._frame(data, rate_checked=True)
        if rest is not None:
            await rest

    async def _too_big(self, data: bytes) -> None:
        await self._reject_frame(
            "invalid_item", f"frame: larger than {MAX_FRAME_BYTES // 1024} KiB", data
        )
        await self.close(CLOSE_TOO_BIG, "frame too large")

    async def _slow_down(self, wait: float) -> None:
        """Over the frame rate: say so (at most once a second) and read slower; drop nothing."""
        now = time.monotonic()
        if now - self._last_rate_warning >= 1.0:
            self._last_rate_warning = now
            rate = self.hub.settings.max_frames_per_s
            self.post(
                {
                    "type": "error",
                    "code": "rate_limited",
                    "message": f"more than {rate:g} frames/s; the server is reading slower",
                }
            )
        await asyncio.sleep(wait)

    async def _reject_frame(self, code: str, message: str, raw: bytes) -> None:
        rejection = Rejection(code, message, raw[:KEEP_RAW_BYTES])
        self.post(error_frame(rejection))
        plan = self.processor.process([], [rejection], [], self.hub.clock())
        await self.hub.writer.submit(plan, self.committed)

    async def _protocol_error(self, exc: BaseException) -> None:
        """aiohttp refused the frame (e.g. beyond KEEP_RAW_BYTES, bad UTF-8 in a close)."""
        reason = f"frame: {exc}"[:500]
        log.info("vehicle %s: websocket error: %s", self.vehicle_id, reason)
        plan = self.processor.process(
            [], [Rejection("invalid_item", reason, b"")], [], self.hub.clock()
        )
        await self.hub.writer.submit(plan, self.committed)

    # -- sending ---------------------------------------------------------------------

    def post(self, frame: dict[str, Any]) -> None:
        self.send_later(orjson.dumps(frame))

    def send_later(self, payload: bytes) -> None:
        if self.closed:
            return
        self._out.append(payload)
        self.hub.mark_dirty(self)

    def write_buffer_size(self) -> int:
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def write_pending(self) -> None:
        """Write queued frames straight to the socket, in one write.

        Server frames are unmasked and we never compress, so a frame is a 2–10 byte
        header and the payload; writing them here instead of awaiting aiohttp's
        ``send_frame`` per frame saves two coroutine hops per ack. Used only while the
        peer keeps up (see ``Hub.run_sender``); whole frames, so nothing interleaves.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self.ws.closed:
            self.closed = True
            return
        if not self._out:  # the common case: one ack after a commit
            if self._ack_due:
                transport.write(_text_frame(ack_payload(self._ack_due)))
                self._ack_due = 0
            return
        transport.write(b"".join(map(_text_frame, self._take_out())))

    async def flush_out(self) -> None:
        """Send queued frames through aiohttp, waiting for the peer to drain (slow peers).

        Runs until the queue is empty; meanwhile the sender leaves this connection alone,
        so frames keep their order.
        """
        self.draining = True
        try:
            while self._out or self._ack_due:
                for payload in self._take_out():
                    await self.ws.send_frame(payload, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            self.closed = True  # the reader side notices and cleans up
        finally:
            self.draining = False

    def _take_out(self) -> list[bytes]:
        """The queued frames, the due ack first; the queue is left empty."""
        out, self._out = self._out, []
        if self._ack_due:
            out.insert(0, ack_payload(self._ack_due))
            self._ack_due = 0
        return out

    def intervene(self, plan: StorePlan) -> None:
        """Act in the cab now, before the commit: a voice alert must not wait for the
        database. Ids derive from the cause, so a replay after a crash re-issues the same
        ones (see ``pipeline.intervention_id``); the resend timer covers a lost frame."""
        now = time.monotonic()
        for intervention in plan.interventions:
            payload = orjson.dumps(intervention.frame())
            self.outstanding[intervention.id] = Outstanding(payload, now, now)
            self.send_later(payload)
        self.hub.send_now(self)

    def committed(self, plan: StorePlan) -> None:
        """Writer callback: the plan is durable; ack it."""
        if plan.dropped_alarms and plan.stored_alarms is not None:
            self.processor.adopt(plan.dropped_alarms, plan.stored_alarms)
        if plan.max_seq and self.session.committed(plan.max_seq):
            self._ack_due = self.session.stored_seq
            self.hub.mark_dirty(self)
        self.hub.stats.count_committed(plan)

    def resend(self, frames: list[tuple[str, dict[str, Any], float]]) -> None:
        """Queue interventions loaded from the database (issued on an earlier connection)."""
        now = time.monotonic()
        for ident, frame, age_s in frames:
            payload = orjson.dumps(frame)
            self.outstanding[ident] = Outstanding(payload, now, now - age_s)
            self.send_later(payload)

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            await self.ws.close(code=code, message=reason.encode())


async def _raise(exc: Exception) -> None:
    raise exc


def _text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def welcome_time() -> str:
    return iso_ms(datetime.now(UTC))
