"""Server and PostgreSQL CPU per acked reading at N units x 1 Hz, 2 server workers.

Less sensitive to a busy machine than latency: compare two versions of the code by
running this from each checkout's root (it imports that checkout's code).

    .venv/bin/python benchmarks/cpu_per_reading.py [UNITS] [SECONDS]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))

from ingest import Server, postgres_cpu_s, prepare

from telematics.store.database import EMBEDDED_DB, start_embedded


def measure(units: int, duration: float, work: Path, url: str) -> dict[str, float]:
    tokens = work / "tokens.csv"
    asyncio.run(prepare(url, units, tokens))
    server = Server("real", url, work, 2)
    try:
        sim = subprocess.Popen(
            [sys.executable, "-m", "telematics", "simulate", "--url", server.url,
             "--tokens", str(tokens), "--vehicles", str(units), "--duration", str(duration),
             "--rate", "1", "--event-interval", "10,30", "--drops-per-hour", "0",
             "--connect-rate", "500", "--warmup", "15", "--drain", "5"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        time.sleep(20)  # past the connect ramp
        server0, pg0, t0 = server.cpu_seconds(), postgres_cpu_s(), time.monotonic()
        out, _ = sim.communicate()
        server1, pg1, t1 = server.cpu_seconds(), postgres_cpu_s(), time.monotonic()
    finally:
        server.stop()
    summary = json.loads(out)
    readings = summary["steady_acked_per_s"] * (t1 - t0)
    return {
        "server_cpu_us_per_reading": round((server1 - server0) / readings * 1e6, 1),
        "postgres_cpu_us_per_reading": round((pg1 - pg0) / readings * 1e6, 1),
        "ack_p99_ms": summary["ack_latency"]["p99_ms"],
        "window_s": round(t1 - t0, 1),
    }


def main() -> int:
    units = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 50.0
    with tempfile.TemporaryDirectory(prefix="telematics-cpu-") as tmp:
        work = Path(tmp)
        embedded = start_embedded(work, cleanup_mode="delete")
        try:
            print(json.dumps(measure(units, duration, work, embedded.get_uri(EMBEDDED_DB))))
        finally:
            embedded.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
