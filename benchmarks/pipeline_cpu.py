"""CPU per reading of the pure ingest path, without sockets or database.

Simulated units' frames (one reading each, or batches) go through ``DeviceSession``
(decode) and ``VehicleProcessor`` (state, rules, plan), interleaved over the vehicles as
a busy server sees them. Prints µs per reading for each stage, best of ``--rounds``.
Run it from a checkout's root to compare two versions of the code minutes apart:

    .venv/bin/python benchmarks/pipeline_cpu.py [--vehicles 200] [--frames 100] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))

from ingest import CLASSES, python_loop_seconds

from telematics.classify.context import load_policy
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.pipeline import VehicleProcessor
from telematics.protocol.session import DeviceSession
from telematics.sim.outbox import Outbox
from telematics.sim.vehicle import VehicleSim


def make_frames(vehicles: int, frames: int, batch: int) -> list[tuple[int, bytes]]:
    """(vehicle index, frame) pairs, round-robin over the vehicles."""
    per_vehicle = []
    for n in range(vehicles):
        sim = VehicleSim(f"B-{n:05d}", CLASSES[n % 4], 7, unit_index=n,
                         event_interval_s=(10.0, 30.0))  # fmt: skip
        outbox = Outbox(cap=frames * batch * 2)
        for _ in range(frames * batch):
            for item in sim.step(1.0):
                outbox.add(item)
        payloads = []
        while (frame := outbox.take_frame(batch, 0.0)) is not None:
            payloads.append(frame.payload)
        per_vehicle.append(payloads)
    longest = max(map(len, per_vehicle))
    return [(n, p[i]) for i in range(longest) for n, p in enumerate(per_vehicle) if i < len(p)]


def run_round(vehicles: int, frames: list[tuple[int, bytes]]) -> tuple[float, float, int]:
    """Decode and process every frame on fresh vehicles: (decode s, process s, readings)."""
    policy = load_policy()
    sessions, processors = [], []
    for n in range(vehicles):
        vehicle_class = CLASSES[n % 4]
        profile = CLASS_PROFILES[vehicle_class]
        vid = f"B-{n:05d}"
        vehicle = Vehicle(vid, "bench", vehicle_class, None, profile.tire_layout, 850.0)
        sessions.append(DeviceSession(vid, 0))
        processors.append(VehicleProcessor(vehicle, policy))
    decode_s = process_s = 0.0
    readings = 0
    clock = time.thread_time
    for n, payload in frames:
        now = datetime.now(UTC)
        t0 = clock()
        inbound = sessions[n].receive(payload, now)
        t1 = clock()
        processors[n].process(inbound.items, inbound.rejected, inbound.intervention_acks, now)
        t2 = clock()
        decode_s += t1 - t0
        process_s += t2 - t1
        readings += len(inbound.items)
    return decode_s, process_s, readings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--frames", type=int, default=100, help="frames per vehicle")
    parser.add_argument("--batch", type=int, default=50, help="readings per frame")
    parser.add_argument("--rounds", type=int, default=3, help="report the best of these")
    args = parser.parse_args()
    frames = make_frames(args.vehicles, args.frames, args.batch)
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        decode_s, process_s, readings = run_round(args.vehicles, frames)
        for name, seconds in (("decode", decode_s), ("process", process_s)):
            us = 1e6 * seconds / readings
            best[name] = min(best.get(name, us), us)
    result = {
        "vehicles": args.vehicles, "frames": len(frames), "batch": args.batch,
        "decode_us_per_reading": round(best["decode"], 2),
        "process_us_per_reading": round(best["process"], 2),
        "python_loop_10m_s": python_loop_seconds(),
    }  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
