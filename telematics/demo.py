"""``telematics demo``: embedded database, server and simulated fleet, with live progress."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from telematics.config import Settings
from telematics.fleet import VEHICLE_CLASSES
from telematics.runtime import collecting, install_fast_loop, tune_gc
from telematics.sim import FleetStats, SimConfig, UnitSpec, run_fleet
from telematics.store import operators, registry, sessions
from telematics.store.database import database_url
from telematics.store.migrate import migrate

_CLASS_MIX = ("coach", "coach", "bus", "bus", "coach", "bus", "hazmat", "freight", "hazmat", "bus")


def demo_vehicles(count: int) -> list[registry.NewVehicle]:
    """A fixed, reproducible fleet around Suzhou: mostly coaches and buses, some hazmat."""
    vehicles = []
    for n in range(1, count + 1):
        vehicle_class = _CLASS_MIX[n % len(_CLASS_MIX)]
        assert vehicle_class in VEHICLE_CLASSES
        vehicles.append(
            registry.NewVehicle(
                f"SZ-{n:05d}", f"suzhou-{vehicle_class}", vehicle_class, f"苏E·{n:05d}"
            )
        )
    return vehicles


DEMO_USER = "demo"


async def demo_user(conn: asyncpg.Connection) -> str:
    """An admin for the dashboard with a fresh random password each run (printed once)."""
    password = secrets.token_urlsafe(12)
    if not await conn.fetchval("SELECT true FROM operators WHERE id = $1", DEMO_USER):
        await operators.add_operator(conn, DEMO_USER, "admin", None)
    await sessions.set_password(conn, DEMO_USER, password)
    return password


async def prepare_fleet(url: str, count: int) -> tuple[list[UnitSpec], str]:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        password = await demo_user(conn)
        wanted = demo_vehicles(count)
        known = {
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM vehicles WHERE id = ANY($1::text[])", [v.id for v in wanted]
            )
        }
        fresh = await registry.add_vehicles(conn, [v for v in wanted if v.id not in known])
        reissued = await registry.issue_tokens(conn, sorted(known))
    finally:
        await conn.close()
    tokens = dict(fresh + reissued)
    return [UnitSpec(v.id, tokens[v.id], v.vehicle_class) for v in wanted], password


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(url: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TELEMATICS_DATABASE_URL": url}
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "telematics", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def wait_healthy(
    http: aiohttp.ClientSession, base: str, server: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited during start-up; see var/demo-server.log")
        try:
            async with http.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the server did not become healthy within 60 s")


def progress_line(
    elapsed: float, stats: dict[str, Any], rate: float, fleet: FleetStats, total: int
) -> str:
    alarms = stats.get("alarms", {})
    return (
        f"{elapsed:6.0f}s  connected {stats.get('connected', 0):>5}/{total}"
        f"  readings/s {rate:8.0f}  events {stats.get('events', 0):>7}"
        f"  alarms general {alarms.get('general', 0):>6} moderate {alarms.get('moderate', 0):>5}"
        f" severe {alarms.get('severe', 0):>3}"
        f"  interventions delivered {stats.get('interventions_delivered', 0)}"
        f"/{stats.get('interventions_issued', 0)}"
        f"  unacked {fleet.unacked_items()}"
    )


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    print(
        "starting embedded PostgreSQL in ./var/pg …"
        if not settings.database_url
        else "using TELEMATICS_DATABASE_URL …",
        flush=True,
    )
    url = database_url(settings)
    units, password = await prepare_fleet(url, args.vehicles)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tokens_file = settings.data_dir / "demo-tokens.csv"
    tokens_file.write_text("".join(f"{u.vehicle_id},{u.token},{u.vehicle_class}\n" for u in units))
    port = args.port or free_port()
    server = start_server(url, port, settings.data_dir / "demo-server.log")
    base = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fleet = FleetStats()
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base, server)
            async with http.get(f"{base}/v1/stats") as resp:
                grading = (await resp.json())["grading"]
            print(
                f"grading by severity model {grading['model_version']}"
                if grading["grader"] == "model"
                else f"grading by the rules ({grading['fallback_reason']})",
                flush=True,
            )
            print(
                f"server on {base} (log: {settings.data_dir / 'demo-server.log'});"
                f" {len(units)} vehicles; tokens in {tokens_file}; Ctrl-C stops\n"
                f"dashboard: {base}/dashboard  user {DEMO_USER}  password {password}",
                flush=True,
            )
            config = SimConfig(
                url=f"ws://127.0.0.1:{port}/v1/device",
                units=units,
                rate_hz=args.rate,
                duration_s=args.duration or None,
                seed=args.seed,
            )
            sim = asyncio.create_task(run_fleet(config, fleet, stop))
            started = last_t = time.monotonic()
            last_items = 0
            tty = sys.stdout.isatty()
            while not sim.done():
                await asyncio.wait({sim}, timeout=1.0)
                if server.poll() is not None:
                    print("\nthe server stopped unexpectedly; see the log", file=sys.stderr)
                    stop.set()
                    break
                try:
                    async with http.get(f"{base}/v1/stats") as resp:
                        stats = await resp.json()
                except aiohttp.ClientError:
                    continue
                now = time.monotonic()
                rate = (stats["committed_items"] - last_items) / max(now - last_t, 1e-3)
                last_items, last_t = stats["committed_items"], now
                line = progress_line(now - started, stats, rate, fleet, len(units))
                print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
            stop.set()
            await sim
            print("\nfleet stopped:", fleet.snapshot(), flush=True)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    install_fast_loop()
    tune_gc()
    return asyncio.run(collecting(_demo(args, settings)))
