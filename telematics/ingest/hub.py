"""Process-wide ingest state: live connections, per-vehicle processors, sending, timers.

Timers besides the sweeper: the alarm timer fires due escalation steps (once a second),
clears alarms whose behaviour has been absent long enough, and raises and clears the
unit_silent alarm (``telematics/silence.py``) of units silent on the road; a listener on
``telematics_alarms`` makes processors forget alarms cleared elsewhere (a dispatcher,
another worker); the zones poller swaps in a rebuilt zone index when zones change.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from telematics.classify.risk_policy import RiskPolicy
from telematics.classify.serving import GradingService
from telematics.config import Settings
from telematics.errors import TelematicsError
from telematics.fleet import Vehicle
from telematics.geo.index import ZoneIndex
from telematics.ingest.connection import CLOSE_GOING_AWAY, DeviceConnection
from telematics.ingest.looplag import LoopMonitor
from telematics.intervene.escalation import EscalationStep, InterventionPolicy
from telematics.pipeline import Intervention, StorePlan, VehicleProcessor, ZoneSource
from telematics.protocol.messages import DeviceEvent
from telematics.protocol.session import Inbound
from telematics.spread import spread
from telematics.store import alarms as alarm_store
from telematics.store import registry
from telematics.store import silence as silence_store
from telematics.store import zones as zone_store
from telematics.store.notify import listen_forever
from telematics.store.writer import BatchWriter

log = logging.getLogger(__name__)

MAX_CACHED_PROCESSORS = 50_000
_SEND_INLINE_LIMIT = 64 * 1024  # a peer with more unsent bytes gets its own sending task


@dataclass
class IngestStats:
    frames: int = 0
    items: int = 0
    events: int = 0
    rejected: int = 0
    duplicates: int = 0
    committed_items: int = 0
    alarms: Counter[str] = field(default_factory=Counter)
    interventions_issued: int = 0
    interventions_delivered: int = 0
    handshakes_abandoned: int = 0  # units that hung up before their upgrade was answered
    handshakes_superseded: int = 0  # finished after a newer connection of the same unit

    def count_inbound(self, inbound: Inbound) -> None:
        # Once per frame: plain loops, no generator set up for the usual empty case.
        self.frames += 1
        items = inbound.items
        self.items += len(items)
        for item in items:
            if type(item) is DeviceEvent:
                self.events += 1
        self.rejected += len(inbound.rejected)
        self.duplicates += inbound.duplicates
        for ack in inbound.intervention_acks:
            if ack.status == "delivered":
                self.interventions_delivered += 1

    def count_committed(self, plan: StorePlan) -> None:
        self.committed_items += len(plan.telemetry) + len(plan.events)
        if plan.severities:
            self.alarms.update(plan.severities)
        self.interventions_issued += len(plan.interventions)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Hub:
    #: Alarm timer: escalations every tick, automatic clears every ``auto_clear_every_s``.
    alarm_tick_s = 1.0
    auto_clear_every_s = 5.0
    zones_poll_s = 5.0

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        policy: RiskPolicy,
        database_url: str,
        escalation: InterventionPolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.policy = policy
        self.escalation = escalation
        self.database_url = database_url
        self.clock = clock  # the hub's only clock (tests move it): ingest, timers, writer
        self.stale_after = timedelta(seconds=settings.stale_after_s)
        self.writer = BatchWriter(
            database_url,
            settings.max_pending_items,
            settings.max_flush_items,
            settings.flush_interval_ms / 1000,
            escalation=escalation,
            clock=clock,
            after_commit=self.send_dirty,  # acks go out in the same loop turn as the commit
        )
        self.zones = ZoneSource()
        self.connections: dict[str, DeviceConnection] = {}
        self.processors: OrderedDict[str, VehicleProcessor] = OrderedDict()
        self.grading = GradingService(policy, settings.model_dir)
        self.stats = IngestStats()
        self.started = time.monotonic()
        self.loop_monitor = LoopMonitor()
        self._dirty: dict[DeviceConnection, None] = {}
        self._dirty_event = asyncio.Event()
        self._slow_senders: set[asyncio.Task[None]] = set()
        # unit_silent: silence is counted only from when this worker was up and could
        # store what units sent (reset after the database or the writer failed), and
        # reconnects are noted on the database in the timer's next turn.
        self.up_since = clock()
        self._heard: dict[str, datetime] = {}
        # Upgrade requests in the order they arrived: a unit that gave up on a slow
        # handshake and dialled again must not be thrown off by the old one finishing late.
        self.arrivals = itertools.count(1)
        self._db_failed = False
        self._writer_retries = 0

    # -- connections -----------------------------------------------------------------

    def pending_since(self) -> datetime:
        """Interventions issued before this have expired: not resent on a connect."""
        return self.clock() - timedelta(seconds=self.settings.intervention_expire_s)

    async def attach(self, conn: DeviceConnection, has_pending: bool = True) -> bool:
        """Register a new connection (replacing an older one of the same vehicle) and
        resend its undelivered interventions (``has_pending``: whether there may be any).

        False, and ``conn`` closed, if the vehicle's current connection arrived after it:
        in a connect storm a unit gives up on a slow handshake and dials again, and the
        abandoned handshake can finish after the new one; it must not replace the unit's
        live connection."""
        old = self.connections.get(conn.vehicle_id)
        if old is not None and old.arrival > conn.arrival:
            self.stats.handshakes_superseded += 1
            await conn.close(1000, "superseded by a newer connection")
            return False
        if old is not None:
            await old.close(1000, "replaced by a newer connection")
        self.connections[conn.vehicle_id] = conn
        self._heard[conn.vehicle_id] = self.clock()  # a reconnect is news from the unit
        if not has_pending:
            return True
        since = self.pending_since()
        async with self.pool.acquire() as db:
            pending = await registry.pending_interventions(db, conn.vehicle_id, since)
        now = self.clock()
        conn.resend(
            [
                (
                    p.id,
                    Intervention(
                        p.id,
                        p.alarm_id,
                        conn.vehicle_id,
                        p.severity,
                        p.action,
                        p.message,
                        p.cause_seq,
                        p.cause_kind,
                        p.issued_at,
                    ).frame(),
                    (now - p.issued_at).total_seconds(),
                )
                for p in pending
            ]
        )
        return True

    def detach(self, conn: DeviceConnection) -> None:
        conn.closed = True
        if self.connections.get(conn.vehicle_id) is conn:
            del self.connections[conn.vehicle_id]
        self._dirty.pop(conn, None)

    async def processor_for(
        self, vehicle: Vehicle, stored_seq: int, has_active_alarms: bool = True
    ) -> VehicleProcessor:
        """The vehicle's processor: kept across reconnects, rebuilt from the database
        (its open alarms; ``has_active_alarms`` False: it has none, nothing to read).

        ``stored_seq`` is the vehicle's cursor as read for this connection. Beyond the
        last seq the cached processor saw, the vehicle streamed to another worker
        meanwhile, which may have opened, extended or closed alarms this one never heard
        of: reusing it would open a second alarm for a behaviour already open.
        """
        processor = self.processors.get(vehicle.id)
        if (
            processor is not None
            and processor.vehicle == vehicle
            and processor.seen_seq >= stored_seq
        ):
            self.processors.move_to_end(vehicle.id)
            return processor
        processor = VehicleProcessor(
            vehicle, self.policy, self.escalation, self.zones, self.stale_after
        )
        if has_active_alarms:
            async with self.pool.acquire() as db:
                processor.restore(await alarm_store.active_alarms_of(db, vehicle.id))
        processor.seen_seq = stored_seq  # read before the alarms: they are at least as new
        self.processors[vehicle.id] = processor
        while len(self.processors) > MAX_CACHED_PROCESSORS:
            self.processors.popitem(last=False)
        return processor

    # -- sending ---------------------------------------------------------------------

    def mark_dirty(self, conn: DeviceConnection) -> None:
        self._dirty[conn] = None
        self._dirty_event.set()

    async def run_sender(self) -> None:
        """Send frames queued outside a commit (errors, resends, replies)."""
        while True:
            await self._dirty_event.wait()
            self.send_dirty()

    def send_dirty(self) -> None:
        """Write every dirty connection's frames."""
        self._dirty_event.clear()
        dirty, self._dirty = self._dirty, {}
        for conn in dirty:
            self._send(conn)

    def send_now(self, conn: DeviceConnection) -> None:
        """Write one connection's frames in this loop turn (urgent: interventions)."""
        self._dirty.pop(conn, None)
        self._send(conn)

    def _send(self, conn: DeviceConnection) -> None:
        """A peer that stops reading gets its own task, not the loop's."""
        if conn.closed or conn.draining:
            return
        if conn.write_buffer_size() > _SEND_INLINE_LIMIT:
            task = asyncio.create_task(conn.flush_out())
            self._slow_senders.add(task)
            task.add_done_callback(self._slow_senders.discard)
        else:
            conn.write_pending()

    # -- timers ----------------------------------------------------------------------

    async def run_sweeper(self, period_s: float = 1.0) -> None:
        """Once a second: ping quiet units, close silent ones, resend unacked interventions."""
        s = self.settings
        while True:
            await asyncio.sleep(period_s)
            now = time.monotonic()
            # A busy unit needs nothing: checked inline, so a sweep of thousands of
            # connections does not start a coroutine for each (one loop stall a second).
            quiet = min(s.idle_timeout_s, s.ping_interval_s)
            for conn in list(self.connections.values()):
                if now - conn.last_activity >= quiet:
                    try:
                        if await self._sweep_quiet(conn, now, s):
                            continue  # closed
                    except (ConnectionError, RuntimeError) as exc:
                        log.debug("sweep of %s failed: %s", conn.vehicle_id, exc)
                        continue
                if conn.outstanding:
                    self._resend_due(conn, now, s)

    async def _sweep_quiet(self, conn: DeviceConnection, now: float, s: Settings) -> bool:
        """Ping a quiet unit, close a silent one (True)."""
        idle = now - conn.last_activity
        if idle >= s.idle_timeout_s:
            log.info("vehicle %s silent for %.0fs: closing", conn.vehicle_id, idle)
            await conn.close(CLOSE_GOING_AWAY, "idle timeout")
            return True
        if idle >= s.ping_interval_s and now - conn.last_ping >= s.ping_interval_s:
            conn.last_ping = now
            await conn.ws.ping()
        return False

    def _resend_due(self, conn: DeviceConnection, now: float, s: Settings) -> None:
        """Resend interventions not acknowledged in time; give up on expired ones."""
        for ident, item in list(conn.outstanding.items()):
            if now - item.issued >= s.intervention_expire_s:
                del conn.outstanding[ident]  # stays 'issued' in the database; no more resends
            elif now - item.last_sent >= s.intervention_resend_s:
                item.last_sent = now
                conn.send_later(item.frame)

    # -- alarms: escalation, automatic clears, clears made elsewhere --------------------

    async def run_alarm_timer(self) -> None:
        """Fire due escalation steps every tick; clear lapsed alarms now and then."""
        last_clear = -float("inf")
        while True:
            await asyncio.sleep(self.alarm_tick_s)
            clear = time.monotonic() - last_clear >= self.auto_clear_every_s
            try:
                await self.alarm_tick(auto_clear=clear)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("alarm timer: %r; trying again next tick", exc)
                self._db_failed = True  # units were not stored meanwhile: not silence
                continue
            except Exception:  # a bug must not stop escalations for good
                log.exception("alarm timer failed; trying again next tick")
                continue
            if clear:
                last_clear = time.monotonic()

    async def alarm_tick(self, auto_clear: bool = True) -> list[EscalationStep]:
        """One turn of the alarm timer; the escalation steps it fired. Silent units are
        looked for with the automatic clears; their alarms clear every turn."""
        fired: list[EscalationStep] = []
        async with self.pool.acquire() as db:
            for _ in range(10):  # a backlog (after a restart) drains in bounded rounds
                steps = await alarm_store.fire_due_escalations(
                    db, self.clock(), policy=self.escalation
                )
                fired += steps
                if len(steps) < 100:
                    break
            if auto_clear:
                for alarm in await alarm_store.auto_clear_alarms(
                    db, self.clock(), policy=self.escalation
                ):
                    self.forget_alarm(alarm.vehicle_id, alarm.key, alarm.id)
            await self._silent_units(db, find_silent=auto_clear)
        for step in fired:
            # The dashboard hears of each step through NOTIFY (store.alarms.RAISED_CHANNEL).
            log.info(
                "escalation: alarm %s of %s (%s) level %d to %s%s",
                step.alarm_id,
                step.vehicle_id,
                step.severity,
                step.level,
                step.target,
                f", {(step.fired_at - step.due_at).total_seconds():.0f}s late" if step.late else "",
            )
        return fired

    async def _silent_units(self, db: asyncpg.Connection, find_silent: bool) -> None:
        """Note reconnects, then raise and clear unit_silent alarms (one worker at a time)."""
        retries = self.writer.stats.retries
        if self._db_failed or retries != self._writer_retries:
            # Items may have gone unstored until now: silence counts from here.
            self.up_since = self.clock()
            self._db_failed, self._writer_retries = False, retries
        heard, self._heard = self._heard, {}
        try:
            await silence_store.note_heard(db, heard)
        except BaseException:
            for vehicle_id, at in heard.items():  # not lost: noted next turn (a newer wins)
                self._heard.setdefault(vehicle_id, at)
            raise
        plan = await silence_store.raise_and_clear(
            db,
            self.clock(),
            self.up_since,
            policy=self.policy,
            escalation=self.escalation,
            find_silent=find_silent,
        )
        for o in plan.opened:
            a = o.alarm
            log.info("unit silent: %s (%s) %s", a.vehicle_id, a.severity, a.reason)

    def forget_alarm(self, vehicle_id: str, key: str, alarm_id: str) -> None:
        processor = self.processors.get(vehicle_id)
        if processor is not None:
            processor.forget(key, alarm_id)

    def _alarm_changed(self, conn: object, pid: int, channel: str, payload: str) -> None:
        """``telematics_alarms`` notice: forget an alarm that is no longer active."""
        try:
            change = orjson.loads(payload)
            if change.get("active") is False:
                self.forget_alarm(str(change["vehicle_id"]), str(change["key"]), str(change["id"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring a malformed %s notice: %r", channel, exc)

    async def run_alarm_listener(self, retry_s: float = 5.0) -> None:
        """Forget alarms cleared elsewhere. Notices sent while the listener reconnects are
        missed: an auto-cleared alarm still reopens at its next occurrence (``occur`` sees
        the lapse), but occurrences of a hand-cleared one are counted on it until it lapses."""
        await listen_forever(self.database_url, [alarm_store.CHANNEL], self._alarm_changed, retry_s)

    # -- zones ---------------------------------------------------------------------------

    async def load_zones(self, db: asyncpg.Connection) -> None:
        version, found = await zone_store.zones_snapshot(db)
        self.zones.index = ZoneIndex(found, version)
        log.info("zones: %d loaded (version %s)", len(found), version)

    async def run_zones_poller(self) -> None:
        """Rebuild the zone index when zones change (processors swap it at their next frame)."""
        while True:
            await asyncio.sleep(self.zones_poll_s)
            try:
                async with self.pool.acquire() as db:
                    if await zone_store.zones_version(db) != self.zones.index.version:
                        await self.load_zones(db)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TelematicsError) as exc:
                log.warning("zones poll failed: %r", exc)

    async def close_all(self) -> None:
        for conn in list(self.connections.values()):
            try:
                await conn.close(CLOSE_GOING_AWAY, "server shutting down")
            except (ConnectionError, RuntimeError):
                pass

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "connected": len(self.connections),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "frames": s.frames,
            "items": s.items,
            "committed_items": s.committed_items,
            "events": s.events,
            "rejected": s.rejected,
            "duplicates": s.duplicates,
            "alarms": dict(s.alarms),
            "interventions_issued": s.interventions_issued,
            "interventions_delivered": s.interventions_delivered,
            "handshakes_abandoned": s.handshakes_abandoned,
            "handshakes_superseded": s.handshakes_superseded,
            "writer_backlog": self.writer.backlog,
            "writer_flushes": self.writer.stats.flushes,
            "writer_retries": self.writer.stats.retries,
            "writer_flush_ms": spread(self.writer.stats.flush_ms),
            "writer_flush_items": spread(self.writer.stats.flush_items, 0),
            "writer_commit_wait_ms": spread(self.writer.stats.commit_wait_ms),
            **self.loop_monitor.snapshot(),
            "grading": self.grading.snapshot(),
        }
