"""The served OpenAPI document against the live app: schemathesis (from PyPI) generates
requests for every operation and must find no server error."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg

from tests.helpers import RunningServer
from tests.insurer.helpers import connect_vehicle, insurer_with_policy, severe_alarm

ST = Path(sys.executable).with_name("st")


async def test_schemathesis_finds_no_server_error(
    server: RunningServer, db: asyncpg.Connection, tmp_path: Path
) -> None:
    key = await insurer_with_policy(db, "ins-a", fleet="F1")
    unit = await connect_vehicle(server, "SU-S1", "F1")
    await severe_alarm(server, unit, 1)
    await unit.close()
    proc = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        f"{server.http_url}/api/v1/insurer/openapi.json",
        "--checks",
        "not_a_server_error",
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        "15",
        "--seed",
        "1",
        "--generation-deterministic",
        "--request-timeout",
        "10",
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=110)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    assert "operations" in text.lower() or "passed" in text.lower(), text[-2000:]
