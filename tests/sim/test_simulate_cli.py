"""`telematics simulate` against a real server: the summary a benchmark reads."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.helpers import RunningServer, add_vehicle


async def test_simulate_prints_a_summary_with_its_own_loop_lag(
    server: RunningServer, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.csv"
    lines = [f"S-{n},{await add_vehicle(server.db_url, f'S-{n}')},coach\n" for n in (1, 2)]
    tokens.write_text("".join(lines))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telematics", "simulate", "--url", server.ws_url,
        "--tokens", str(tokens), "--vehicles", "2", "--rate", "5", "--duration", "3",
        "--drain", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "TELEMATICS_DATABASE_URL": server.db_url},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0
    summary = json.loads(out)
    assert summary["ever_connected"] == 2 and summary["items_acked"] > 0
    assert summary["unacked_items"] == 0
    lag = summary["loop_lag_ms"]
    assert set(lag) == {"p50", "p99", "max"} and lag["max"] >= lag["p99"] >= lag["p50"] >= 0
