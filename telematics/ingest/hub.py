"""Process-wide ingest state: live connections, per-vehicle processors, sending, timers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from telematics.classify.rules import Rules
from telematics.config import Settings
from telematics.fleet import Vehicle
from telematics.ingest.connection import CLOSE_GOING_AWAY, DeviceConnection
from telematics.pipeline import Intervention, StorePlan, VehicleProcessor
from telematics.protocol.messages import DeviceEvent
from telematics.protocol.session import Inbound
from telematics.store import registry
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

    def count_inbound(self, inbound: Inbound) -> None:
        self.frames += 1
        self.items += len(inbound.items)
        self.events += sum(1 for i in inbound.items if type(i) is DeviceEvent)
        self.rejected += len(inbound.rejected)
        self.duplicates += inbound.duplicates
        self.interventions_delivered += sum(
            1 for a in inbound.intervention_acks if a.status == "delivered"
        )

    def count_committed(self, plan: StorePlan) -> None:
        self.committed_items += len(plan.telemetry) + len(plan.events)
        self.alarms.update(plan.severities)
        self.interventions_issued += len(plan.interventions)


class Hub:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, rules: Rules, database_url: str
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.rules = rules
        self.writer = BatchWriter(
            database_url,
            settings.max_pending_items,
            settings.max_flush_items,
            settings.flush_interval_ms / 1000,
        )
        self.connections: dict[str, DeviceConnection] = {}
        self.processors: OrderedDict[str, VehicleProcessor] = OrderedDict()
        self.stats = IngestStats()
        self.started = time.monotonic()
        self._dirty: dict[DeviceConnection, None] = {}
        self._dirty_event = asyncio.Event()
        self._slow_senders: set[asyncio.Task[None]] = set()

    # -- connections -----------------------------------------------------------------

    async def attach(self, conn: DeviceConnection) -> None:
        """Register a new connection (replacing an older one of the same vehicle)."""
        old = self.connections.get(conn.vehicle_id)
        if old is not None:
            await old.close(1000, "replaced by a newer connection")
        self.connections[conn.vehicle_id] = conn
        since = datetime.now(UTC) - timedelta(seconds=self.settings.intervention_expire_s)
        async with self.pool.acquire() as db:
            pending = await registry.pending_interventions(db, conn.vehicle_id, since)
        now = datetime.now(UTC)
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

    def detach(self, conn: DeviceConnection) -> None:
        conn.closed = True
        if self.connections.get(conn.vehicle_id) is conn:
            del self.connections[conn.vehicle_id]
        self._dirty.pop(conn, None)

    async def processor_for(self, vehicle: Vehicle) -> VehicleProcessor:
        """The vehicle's processor: kept across reconnects, rebuilt from the database."""
        processor = self.processors.get(vehicle.id)
        if processor is not None and processor.vehicle == vehicle:
            self.processors.move_to_end(vehicle.id)
            return processor
        processor = VehicleProcessor(vehicle, self.rules)
        since = datetime.now(UTC) - timedelta(seconds=self.rules.cooldown_s)
        async with self.pool.acquire() as db:
            for key, alarm_id, severity, last_ts in await registry.recent_alarms(
                db, vehicle.id, since
            ):
                processor.book.restore(key, alarm_id, severity, last_ts)
        self.processors[vehicle.id] = processor
        while len(self.processors) > MAX_CACHED_PROCESSORS:
            self.processors.popitem(last=False)
        return processor

    # -- sending ---------------------------------------------------------------------

    def mark_dirty(self, conn: DeviceConnection) -> None:
        self._dirty[conn] = None
        self._dirty_event.set()

    async def run_sender(self) -> None:
        """Send queued frames; a peer that stops reading gets its own task, not the loop's."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            dirty, self._dirty = self._dirty, {}
            for conn in dirty:
                if conn.closed:
                    continue
                if conn.write_buffer_size() > _SEND_INLINE_LIMIT:
                    task = asyncio.create_task(conn.flush_out())
                    self._slow_senders.add(task)
                    task.add_done_callback(self._slow_senders.discard)
                else:
                    await conn.flush_out()

    # -- timers ----------------------------------------------------------------------

    async def run_sweeper(self, period_s: float = 1.0) -> None:
        """Once a second: ping quiet units, close silent ones, resend unacked interventions."""
        s = self.settings
        while True:
            await asyncio.sleep(period_s)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                try:
                    await self._sweep(conn, now, s)
                except (ConnectionError, RuntimeError) as exc:
                    log.debug("sweep of %s failed: %s", conn.vehicle_id, exc)

    async def _sweep(self, conn: DeviceConnection, now: float, s: Settings) -> None:
        idle = now - conn.last_activity
        if idle >= s.idle_timeout_s:
            log.info("vehicle %s silent for %.0fs: closing", conn.vehicle_id, idle)
            await conn.close(CLOSE_GOING_AWAY, "idle timeout")
            return
        if idle >= s.ping_interval_s and now - conn.last_ping >= s.ping_interval_s:
            conn.last_ping = now
            await conn.ws.ping()
        for ident, item in list(conn.outstanding.items()):
            if now - item.issued >= s.intervention_expire_s:
                del conn.outstanding[ident]  # stays 'issued' in the database; no more resends
            elif now - item.last_sent >= s.intervention_resend_s:
                item.last_sent = now
                conn.send_later(item.frame)

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
            "writer_backlog": self.writer.backlog,
            "writer_flushes": self.writer.stats.flushes,
            "writer_retries": self.writer.stats.retries,
        }
