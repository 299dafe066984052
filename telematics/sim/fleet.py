"""Run a simulated fleet: many units against one server URL."""

from __future__ import annotations

import asyncio
import csv
import logging
import random
import time

from telematics.csvfile import file_errors
from telematics.errors import ConfigError
from telematics.runtime import pause_unless_stopped
from telematics.sim.config import SimConfig, UnitSpec
from telematics.sim.pacer import Pacer
from telematics.sim.stats import FleetStats
from telematics.sim.unit import Unit

log = logging.getLogger("telematics.sim")

STOP_GRACE_S = 3.0  # time units get to close their connections politely
#: The first faulty tires of a fleet show each fault once (useful in small demos).
_FIRST_FAULTS = ("slow_leak", "fast_leak", "overheat")


def tire_faults(n_units: int, fraction: float, seed: int) -> dict[int, bool | str]:
    """Which units (by index) get a faulty tire, and which fault if fixed.

    ``round(fraction * n)`` units, at least one in a fleet of 10 or more when the
    fraction is positive; the first three get a slow leak, a fast leak and an
    overheating wheel, the others a random fault.
    """
    k = round(fraction * n_units)
    if fraction > 0 and n_units >= 10:
        k = max(k, 1)
    chosen = random.Random(f"{seed}:tire-faults").sample(range(n_units), min(k, n_units))
    faults: dict[int, bool | str] = {}
    for i, index in enumerate(chosen):
        faults[index] = _FIRST_FAULTS[i] if i < len(_FIRST_FAULTS) else True
    return faults


async def run_fleet(
    config: SimConfig,
    stats: FleetStats | None = None,
    stop: asyncio.Event | None = None,
) -> FleetStats:
    """Run ``config.units`` until ``config.duration_s`` elapses or ``stop`` is set.

    ``stats`` (created if omitted) is updated live and returned. Units connect over a
    ramp of ``config.connect_rate_per_s``; on stop they close their connections (for
    at most a few seconds) and whatever is still unacknowledged stays counted in
    :meth:`FleetStats.unacked_items`.
    """
    config.validate()
    stats = stats if stats is not None else FleetStats()
    stop = stop if stop is not None else asyncio.Event()
    stats.units = len(config.units)
    stats.started_at = time.time()
    stats.finished_at = None
    faults = tire_faults(len(config.units), config.tire_fault_fraction, config.seed)
    pacer = Pacer(1.0 / config.rate_hz)
    units = [
        Unit(spec, i, config, stats, pacer=pacer, tire_fault=faults.get(i, False))
        for i, spec in enumerate(config.units)
    ]
    ramp = 1.0 / config.connect_rate_per_s
    tasks = [asyncio.create_task(u.run(i * ramp), name=f"unit-{u.spec.vehicle_id}")
             for i, u in enumerate(units)]  # fmt: skip
    for task in tasks:
        task.add_done_callback(_log_crash)
    pacing = asyncio.create_task(pacer.run(), name="pacer")
    warmup = asyncio.get_running_loop().call_later(config.warmup_s, stats.start_steady)
    try:
        if config.duration_s is None:
            await stop.wait()
        else:
            await pause_unless_stopped(stop, config.duration_s)
        if config.drain_s > 0:
            await _drain(units, stats, config.drain_s)
    finally:
        warmup.cancel()
        stats.finished_at = time.time()
        await _shutdown(units, tasks)
        pacing.cancel()
    return stats


async def _drain(units: list[Unit], stats: FleetStats, limit_s: float) -> None:
    """Stop generating; give the server up to ``limit_s`` to acknowledge what was sent."""
    stats.end_steady()
    for unit in units:
        unit.drain()
    deadline = time.monotonic() + limit_s
    while stats.unacked_items() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a sum
        await asyncio.sleep(0.1)


async def _shutdown(units: list[Unit], tasks: list[asyncio.Task[None]]) -> None:
    for unit in units:
        unit.stopping = True
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
    if pending:
        for unit in units:
            unit.abort()
        await asyncio.wait(pending, timeout=STOP_GRACE_S)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s crashed", task.get_name(), exc_info=task.exception())


def read_tokens(path: str) -> list[UnitSpec]:
    """Units from a CSV file of ``id,token`` or ``id,token,class`` lines.

    Blank lines and a header line starting with ``id,`` are ignored; the class
    defaults to ``coach``.
    """
    specs: list[UnitSpec] = []
    with file_errors(path, ConfigError), open(path, newline="", encoding="utf-8") as fh:
        first = True
        reader = csv.reader(fh, strict=True)
        for row in reader:
            lineno = reader.line_num
            fields = [f.strip() for f in row]
            if not fields or not any(fields):
                continue
            if first and fields[0].lower() == "id":
                first = False
                continue
            first = False
            if len(fields) < 2 or not fields[0] or not fields[1]:
                raise ConfigError(f"{path}:{lineno}: expected id,token[,class]")
            if not all(f.isprintable() for f in fields):  # a token goes into a header
                raise ConfigError(f"{path}:{lineno}: control characters in id,token[,class]")
            vehicle_class = fields[2] if len(fields) > 2 and fields[2] else "coach"
            specs.append(UnitSpec(fields[0], fields[1], vehicle_class))
    return specs
