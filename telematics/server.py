"""Running the application: one process, or several sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys

from aiohttp import web

from telematics.config import Settings
from telematics.ingest.app import build_app
from telematics.runtime import install_fast_loop, tune_gc, tune_switching

log = logging.getLogger(__name__)


async def serve_forever(
    settings: Settings,
    database_url: str,
    reuse_port: bool = False,
    ready: asyncio.Event | None = None,
) -> None:
    tune_gc()
    tune_switching()
    runner = web.AppRunner(build_app(settings, database_url), shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
    await site.start()
    log.info("listening on http://%s:%d (device endpoint /v1/device)", settings.host, settings.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()


def run_workers(settings: Settings, database_url: str) -> int:
    """Start ``settings.workers`` processes on one port; forward signals; wait."""
    if settings.workers <= 1:
        install_fast_loop()
        asyncio.run(serve_forever(settings, database_url))
        return 0
    env = {**os.environ, "TELEMATICS_DATABASE_URL": database_url}
    cmd = [
        sys.executable,
        "-m",
        "telematics",
        "serve",
        "--workers",
        "1",
        "--reuse-port",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]
    children = [subprocess.Popen(cmd, env=env) for _ in range(settings.workers)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
