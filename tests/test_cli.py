"""The admin CLI, run as a real subprocess against the test database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from websockets.exceptions import InvalidStatus

from telematics.insurer.store.exposure import ROLLUP_DELAY, ROLLUP_LOCK
from telematics.store.migrate import migrate, migration_files
from tests.helpers import Unit, add_vehicle, start_server, telemetry


def run_cli(db_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TELEMATICS_DATABASE_URL": db_url, "TELEMATICS_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "telematics", *args],
        env=env, capture_output=True, text=True, timeout=60, input=stdin,
    )  # fmt: skip


async def test_vehicle_add_prints_only_the_token(db_url: str, db: asyncpg.Connection) -> None:
    done = run_cli(db_url, "vehicle", "add", "SU-E1", "--fleet", "F", "--class", "hazmat",
                   "--plate", "苏E·00001")  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert len(done.stdout.splitlines()) == 1 and len(token) >= 40
    row = await db.fetchrow("SELECT vehicle_class, plate, tire_layout FROM vehicles")
    assert row["vehicle_class"] == "hazmat" and row["plate"] == "苏E·00001"
    assert len(row["tire_layout"]) == 10
    # the printed token really opens a connection, and nothing but its hash is stored
    assert await db.fetchval("SELECT count(*) FROM device_tokens WHERE token_hash = $1",
                             token.encode()) == 0  # fmt: skip
    server = await start_server(db_url)
    unit = await Unit.connect(server.ws_url, token)
    assert unit.welcome["vehicle_id"] == "SU-E1"
    await unit.close()
    await server.stop()


async def test_vehicle_add_stores_an_empty_plate_as_none(
    db_url: str, db: asyncpg.Connection
) -> None:
    done = run_cli(
        db_url, "vehicle", "add", " V1 ", "--fleet", "F", "--class", "bus", "--plate", " "
    )
    assert done.returncode == 0, done.stderr
    row = await db.fetchrow("SELECT id, plate FROM vehicles")
    assert row["id"] == "V1" and row["plate"] is None  # as `vehicle import` stores them


async def test_vehicle_add_rejects_bad_class_and_duplicates(db_url: str) -> None:
    bad = run_cli(db_url, "vehicle", "add", "X", "--fleet", "F", "--class", "tractor")
    assert bad.returncode != 0 and "tractor" in bad.stderr
    assert run_cli(db_url, "vehicle", "add", "X", "--fleet", "F", "--class", "bus").returncode == 0
    again = run_cli(db_url, "vehicle", "add", "X", "--fleet", "F", "--class", "bus")
    assert again.returncode == 1 and "already registered" in again.stderr
    assert again.stdout == ""


async def test_vehicle_import_thousands(
    db_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    csv_file = tmp_path / "fleet.csv"
    lines = ["id,fleet,class,plate"]
    lines += [f"V{n:05d},F{n % 3},{('coach', 'bus', 'hazmat', 'freight')[n % 4]},P{n}"
              for n in range(3000)]  # fmt: skip
    csv_file.write_text("\n".join(lines) + "\n")
    done = run_cli(db_url, "vehicle", "import", str(csv_file))
    assert done.returncode == 0, done.stderr
    out = [line.split(",") for line in done.stdout.splitlines()]
    assert len(out) == 3000 and out[0][0] == "V00000" and all(len(t) >= 40 for _, t in out)
    assert await db.fetchval("SELECT count(*) FROM vehicles") == 3000
    assert await db.fetchval("SELECT count(*) FROM fleets") == 3


async def test_vehicle_import_is_all_or_nothing(
    db_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text("id,fleet,class,plate\nA,F,bus,\nB,F,spaceship,\n")
    done = run_cli(db_url, "vehicle", "import", str(csv_file))
    assert done.returncode == 1 and "spaceship" in done.stderr
    assert await db.fetchval("SELECT count(*) FROM vehicles") == 0


async def test_vehicle_revoke(db_url: str) -> None:
    token = run_cli(db_url, "vehicle", "add", "R1", "--fleet", "F", "--class", "bus").stdout.strip()
    done = run_cli(db_url, "vehicle", "revoke", "R1")
    assert done.returncode == 0 and "revoked 1" in done.stderr
    server = await start_server(db_url)
    with pytest.raises(InvalidStatus):
        await Unit.connect(server.ws_url, token)
    await server.stop()
    assert run_cli(db_url, "vehicle", "revoke", "nope").returncode == 1


async def test_migrate_applies_each_migration_once(db_url: str, db: asyncpg.Connection) -> None:
    done = run_cli(db_url, "migrate")
    assert done.returncode == 0 and "up to date" in done.stderr
    assert await migrate(db) == []
    recorded = await db.fetchval("SELECT count(*) FROM schema_migrations")
    assert recorded == len(migration_files())


async def test_serve_runs_workers_on_one_port(db_url: str) -> None:
    """`telematics serve --workers 2` accepts units and stops cleanly on SIGTERM."""
    token = await add_vehicle(db_url)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TELEMATICS_DATABASE_URL": db_url, "TELEMATICS_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "telematics", "serve", "--port", str(port), "--workers", "2"],
        env=env,
    )
    try:
        url = f"ws://127.0.0.1:{port}/v1/device"
        for attempt in range(100):
            try:
                unit = await Unit.connect(url, token)
                break
            except OSError:
                if attempt == 99:
                    raise
                await asyncio.sleep(0.2)
        await unit.send(telemetry(1))
        await unit.ack_reaching(1)
        await unit.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


async def test_user_commands(db_url: str, db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO fleets (id, name) VALUES ('F1', 'F1')")

    def user(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_cli(db_url, "user", *args, stdin=stdin)

    unknown = user("add", "wang", "--role", "dispatcher", "--fleet", "F9", "--password-stdin",
                   stdin="correct horse battery\n")  # fmt: skip
    assert unknown.returncode == 1 and "F9" in unknown.stderr
    weak = user("add", "wang", "--role", "dispatcher", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1 and "at least" in weak.stderr
    assert await db.fetchval("SELECT count(*) FROM operators") == 0  # all or nothing
    done = user("add", "wang", "--role", "dispatcher", "--fleet", "F1", "--password-stdin",
                stdin="correct horse battery\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = await db.fetchval("SELECT password_hash FROM operators WHERE id = 'wang'")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    token = user("token", "wang").stdout.strip()
    assert len(token) >= 40
    server = await start_server(db_url)
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{server.http_url}/api/v1/zones", headers=headers) as r:
                assert r.status == 200
            listed = user("list").stdout.split("\n")[0].split("\t")
            assert listed == ["wang", "dispatcher", "F1", "enabled"]
            assert user("disable", "wang").returncode == 0
            async with http.get(f"{server.http_url}/api/v1/zones", headers=headers) as r:
                assert r.status == 401
    finally:
        await server.stop()


async def test_insurer_rollup_sums_the_closed_hours_now(
    db_url: str, db: asyncpg.Connection
) -> None:
    await add_vehicle(db_url, "V-1")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    closed = [hour - timedelta(hours=h) for h in (4, 3, 2)]
    await db.execute("SELECT ensure_month_partitions($1::date)", closed[0].date())
    await db.execute("SELECT ensure_month_partitions($1::date)", hour.date())
    await db.executemany(  # three fixes 10 s apart in the first closed hour
        """INSERT INTO telemetry (vehicle_id, seq, ts, lat, lon, speed_kmh, heading_deg)
           VALUES ('V-1', $1, $2, 31.3 + $1::bigint * 0.001, 120.6, 40, 0)""",
        [(seq, closed[0] + timedelta(seconds=10 * seq)) for seq in (1, 2, 3)],
    )
    await db.executemany(
        "INSERT INTO telemetry_hours (vehicle_id, hour, first_seq) VALUES ('V-1', $1, $2)",
        [(h, 1 + 100 * i) for i, h in enumerate([*closed, hour])],
    )

    # A server's roll-up holds the lock: the command waits for it instead of giving up.
    env = {**os.environ, "TELEMATICS_DATABASE_URL": db_url, "TELEMATICS_LOG_LEVEL": "WARNING"}
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", ROLLUP_LOCK)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "telematics", "insurer", "rollup", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 3.0)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    # The closed hours whole; the open one only as far as its slices closed ≥ 6 min ago
    # (none in its first eleven minutes).
    rolled = "SELECT hour, rolled_s FROM telemetry_hours WHERE rolled_version = version"
    done_s = dict(await db.fetch(rolled))
    assert [done_s.pop(h) for h in closed] == [3600] * 3
    assert all(h == hour for h in done_s)
    limit = (datetime.now(UTC) - ROLLUP_DELAY - hour).total_seconds()
    assert all(0 < s <= limit for s in done_s.values())
    assert out.decode() == f"rolled up {3 + len(done_s)} vehicle-hour(s)\n"
    km = await db.fetchval("SELECT km FROM exposure_hours WHERE hour = $1", closed[0])
    assert km == pytest.approx(2 * 0.1112, rel=0.01)  # two segments of 0.001° latitude
    done = run_cli(db_url, "insurer", "rollup")
    # nothing again, unless another slice of the open hour closed meanwhile
    again = dict(await db.fetch(rolled)).get(hour) != done_s.get(hour)
    assert done.stdout == f"rolled up {int(again)} vehicle-hour(s)\n"
