"""The aiohttp application: device endpoint, operators' API, health and stats, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web

from telematics.api.routes import bind_pool, setup_api
from telematics.classify.risk_policy import load_policy
from telematics.config import Settings
from telematics.dashboard.live import LIVE, LiveFeed, close_live, live_endpoint
from telematics.dashboard.views import setup_dashboard
from telematics.ingest.device import device_endpoint
from telematics.ingest.hub import Hub, utc_now
from telematics.ingest.keys import HUB
from telematics.insurer.api.keys import WEIGHTS
from telematics.insurer.api.routes import setup_insurer_api
from telematics.insurer.rollup import run_rollups
from telematics.insurer.worker import run_delivery_worker
from telematics.intervene.escalation import load_policy as load_escalation_policy
from telematics.report.recurrence import MaxGap, run_evaluator
from telematics.runtime import run_collector
from telematics.store.database import create_pool
from telematics.store.migrate import migrate

log = logging.getLogger(__name__)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB].snapshot())


def build_app(
    settings: Settings, database_url: str, clock: Callable[[], datetime] = utc_now
) -> web.Application:
    """``clock``: the server's notion of now (tests move it to reach escalation steps)."""
    app = web.Application()
    policy = load_policy(settings.policy_file)  # once per worker; errors name the setting
    escalation = load_escalation_policy(settings.escalation_file)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(database_url, settings.db_pool_size)
        async with pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        bind_pool(app, pool)
        hub = Hub(settings, pool, policy, database_url, escalation, clock)
        async with pool.acquire() as conn:
            await hub.load_zones(conn)
        await hub.grading.load()  # the active severity model, else the rules (and why)
        app[HUB] = hub
        live = LiveFeed(pool, database_url, clock)
        app[LIVE] = live
        stopping = asyncio.Event()
        gaps = MaxGap.from_clear_policy(escalation.auto_clear)
        tasks = [
            asyncio.create_task(hub.writer.run(), name="writer"),
            asyncio.create_task(hub.run_sender(), name="sender"),
            asyncio.create_task(hub.run_sweeper(), name="sweeper"),
            asyncio.create_task(hub.loop_monitor.run(), name="loop-monitor"),
            asyncio.create_task(run_collector(), name="gc"),  # see runtime.tune_gc
            asyncio.create_task(hub.run_alarm_timer(), name="alarm-timer"),
            asyncio.create_task(hub.run_alarm_listener(), name="alarm-listener"),
            asyncio.create_task(hub.run_zones_poller(), name="zones-poller"),
            asyncio.create_task(hub.grading.run_poller(), name="model-poller"),
            # Did it work? Freeze each intervention's 10/30-minute recurrence once its
            # window closes (idempotent, so several workers may run it).
            asyncio.create_task(run_evaluator(pool, stopping, max_gap=gaps), name="outcomes"),
            asyncio.create_task(live.run(), name="live-feed"),
            # Insurer webhooks from the durable outbox (SKIP LOCKED: any number of workers).
            asyncio.create_task(run_delivery_worker(pool, stopping), name="webhooks"),
            # Insurers' exposure per closed vehicle-hour (one process at a time).
            asyncio.create_task(run_rollups(pool, stopping, app[WEIGHTS]), name="rollups"),
        ]
        yield
        stopping.set()
        # Shutdown: stop the units, commit what was received, then stop the timers.
        await hub.close_all()
        await hub.writer.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(tasks[0]), timeout=30)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()

    async def close_units(app: web.Application) -> None:
        await app[HUB].close_all()  # so handlers end now, not at the shutdown timeout

    setup_insurer_api(app)  # first: its gate keeps operator auth off /api/v1/insurer/
    setup_api(app, escalation, clock)
    setup_dashboard(app, settings)
    app.router.add_get("/api/v1/live", live_endpoint)
    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_units)
    app.on_shutdown.append(close_live)
    app.router.add_get("/v1/device", device_endpoint)
    app.router.add_get("/healthz", health)
    app.router.add_get("/v1/stats", stats)
    return app
