"""The batch writer's cost per frame, without sockets: Python CPU, PostgreSQL CPU, wall.

Simulated units' one-reading frames go through the real decode / state / rules path
into store plans; the plans are then flushed in groups (as the server's group commit
would) into an embedded PostgreSQL, one transaction per group. Run it from a checkout's
root to compare two versions of the writer on one machine, minutes apart:

    .venv/bin/python benchmarks/writer_flush.py [--vehicles 200] [--frames 200] [--flush 270]
        [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))

import psutil
from ingest import CLASSES, prepare

from telematics.classify.context import load_policy
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.pipeline import StorePlan, VehicleProcessor
from telematics.protocol.session import DeviceSession
from telematics.sim.outbox import Outbox
from telematics.sim.vehicle import VehicleSim
from telematics.store.database import EMBEDDED_DB, start_embedded
from telematics.store.writer import BatchWriter


def make_plans(vehicles: int, frames: int) -> list[StorePlan]:
    """One plan per frame, interleaved over the vehicles as a busy server sees them."""
    policy = load_policy()
    per_vehicle: list[list[StorePlan]] = []
    for n in range(1, vehicles + 1):
        vehicle_class = CLASSES[n % 4]
        vid = f"B-{n:05d}"
        sim = VehicleSim(vid, vehicle_class, 7, unit_index=n, event_interval_s=(10.0, 30.0))
        outbox = Outbox(cap=frames * 2)
        for _ in range(frames):
            for item in sim.step(1.0):
                outbox.add(item)
        profile = CLASS_PROFILES[vehicle_class]
        vehicle = Vehicle(vid, "bench", vehicle_class, None, profile.tire_layout, 850.0)
        session, processor = DeviceSession(vid, 0), VehicleProcessor(vehicle, policy)
        plans = []
        while (frame := outbox.take_frame(1, 0.0)) is not None:
            now = datetime.now(UTC)
            inbound = session.receive(frame.payload, now)
            plans.append(
                processor.process(inbound.items, inbound.rejected, inbound.intervention_acks, now)
            )
        per_vehicle.append(plans)
    longest = max(map(len, per_vehicle))
    return [plans[i] for i in range(longest) for plans in per_vehicle if i < len(plans)]


def server_cpu(pgdata: Path) -> Callable[[], float]:
    """CPU seconds of this benchmark's PostgreSQL: its postmaster and every process it
    started, live or exited; not the other servers on the machine (ingest.py's is all)."""
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))

    def cpu_s() -> float:
        own = postmaster.cpu_times()
        total: float = own.user + own.system + own.children_user + own.children_system
        for child in postmaster.children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.Error:  # exited meanwhile: counted in children_* next time
                continue
            total += times.user + times.system
        return total

    return cpu_s


async def flush_all(
    url: str, plans: list[StorePlan], group: int, rounds: int, postgres_cpu_s: Callable[[], float]
) -> dict[str, Any]:
    """Flush the plans in ``rounds`` equal parts (in time order); each part's figures."""
    writer = BatchWriter(url)
    groups = [plans[i : i + group] for i in range(0, len(plans), group)]
    await writer._flush(groups.pop(0))  # warm-up: partitions, prepared statements
    per_round = -(-len(groups) // rounds)
    figures: dict[str, list[float]] = {"python_us": [], "postgres_us": [], "wall_ms": []}
    for r in range(rounds):
        part = groups[r * per_round : (r + 1) * per_round]
        pg0 = postgres_cpu_s()  # (psutil's own CPU outside the writer's window)
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for plans_of_flush in part:
            await writer._flush(plans_of_flush)
        cpu1, wall1 = time.thread_time(), time.perf_counter()
        pg1 = postgres_cpu_s()
        frames = sum(map(len, part))
        figures["python_us"].append(round(1e6 * (cpu1 - cpu0) / frames, 1))
        figures["postgres_us"].append(round(1e6 * (pg1 - pg0) / frames, 1))
        figures["wall_ms"].append(round(1e3 * (wall1 - wall0) / len(part), 2))
    if writer._conn is not None:
        await writer._conn.close()
    # The least disturbed round is the best estimate of the cost on a shared machine.
    return {
        "flushes_per_round": per_round,
        "python_us_per_frame": min(figures["python_us"]),
        "postgres_us_per_frame": min(figures["postgres_us"]),
        "wall_ms_per_flush": min(figures["wall_ms"]),
        "rounds": figures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--frames", type=int, default=200, help="frames per vehicle per round")
    parser.add_argument("--flush", type=int, default=270, help="frames per flush")
    parser.add_argument("--rounds", type=int, default=5, help="report the best of these")
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="telematics-writer-") as tmp:
        embedded = start_embedded(Path(tmp), cleanup_mode="delete")
        url = embedded.get_uri(EMBEDDED_DB)
        try:
            asyncio.run(prepare(url, args.vehicles, Path(tmp) / "tokens.csv"))
            plans = make_plans(args.vehicles, args.frames * args.rounds)
            pg_cpu = server_cpu(Path(tmp) / "pg")
            figures = uvloop.run(flush_all(url, plans, args.flush, args.rounds, pg_cpu))
        finally:
            embedded.cleanup()
    print(json.dumps({"vehicles": args.vehicles, "frames_per_flush": args.flush, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
