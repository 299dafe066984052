"""``telematics simulate``: run the fleet simulator from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import orjson

from telematics.errors import ConfigError
from telematics.ingest.looplag import LoopMonitor
from telematics.runtime import collecting, tune_gc
from telematics.sim.config import SimConfig
from telematics.sim.fleet import read_tokens, run_fleet
from telematics.sim.stats import FleetStats

DEFAULT_URL = "ws://127.0.0.1:8080/v1/device"
PROGRESS_EVERY_S = 5.0

T = TypeVar("T")


def _interval(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected A,B in seconds, e.g. 10,30") from None
    if not 0 < a <= b:
        raise argparse.ArgumentTypeError("need 0 < A ≤ B")
    return (a, b)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser`` (a subcommand's parser)."""
    parser.add_argument(
        "--vehicles",
        type=int,
        default=None,
        metavar="N",
        help="use the first N tokens of the file (default: all)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1.0,
        metavar="HZ",
        help="telemetry readings per second per vehicle (default 1)",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"device endpoint ({DEFAULT_URL})")
    parser.add_argument(
        "--tokens",
        default="tokens.csv",
        metavar="FILE",
        help="CSV of id,token[,class] lines (default tokens.csv)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="N",
        help="items per frame; 1 sends each reading as a telemetry frame",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=8,
        metavar="N",
        help="unacknowledged frames per vehicle (default 8)",
    )
    parser.add_argument(
        "--flood", action="store_true", help="send as fast as the window allows (load generator)"
    )
    parser.add_argument(
        "--drops-per-hour",
        type=float,
        default=2.0,
        metavar="R",
        help="abrupt disconnects per vehicle per hour (default 2)",
    )
    parser.add_argument(
        "--event-interval",
        type=_interval,
        default=None,
        metavar="A,B",
        help="one event every uniform(A,B) s per vehicle instead of the per-driving-hour rates",
    )
    parser.add_argument(
        "--connect-rate",
        type=float,
        default=200.0,
        metavar="R",
        help="connects per second during start-up (default 200)",
    )
    parser.add_argument("--warmup", type=float, default=0.0, metavar="S",
                        help="count latencies and steady rate only after S seconds")  # fmt: skip
    parser.add_argument("--drain", type=float, default=0.0, metavar="S",
                        help="at the end stop generating and wait up to S s for acks")  # fmt: skip
    parser.add_argument("--samples", metavar="FILE",
                        help="also write the latency samples (seconds) as JSON, so several "
                        "generators' runs can be merged")  # fmt: skip
    parser.add_argument("--tire-interval", type=float, default=10.0, metavar="S",
                        help="seconds of telemetry between tire readings (default 10)")  # fmt: skip


def _progress(stats: FleetStats, last: dict[str, float]) -> str:
    now = time.monotonic()
    dt = max(1e-9, now - last.get("t", now - PROGRESS_EVERY_S))
    acked_rate = (stats.items_acked - last.get("acked", 0.0)) / dt
    frames_rate = (stats.frames_sent - last.get("frames", 0.0)) / dt
    last.update(t=now, acked=float(stats.items_acked), frames=float(stats.frames_sent))
    p50 = stats.percentile("ack", 50, recent=True)
    p99 = stats.percentile("ack", 99, recent=True)
    lat = "-" if p50 is None or p99 is None else f"{p50 * 1e3:.1f}/{p99 * 1e3:.1f} ms"
    errors = sum(stats.errors_by_code.values())
    return (
        f"[sim {stats.elapsed_s:6.0f}s] connected {stats.connected}/{stats.units}  "
        f"acked {stats.items_acked:,} ({acked_rate:,.0f}/s)  frames {frames_rate:,.0f}/s  "
        f"unacked {stats.unacked_items():,}  ack p50/p99 {lat}  "
        f"events {stats.events_sent:,}  interventions {stats.interventions_received:,}  "
        f"errors {errors:,}  reconnects {stats.reconnects:,}"
    )


async def _main(config: SimConfig, stats: FleetStats) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    fleet = asyncio.create_task(run_fleet(config, stats, stop))
    # A late generator loop inflates every latency it measures: report how late it ran.
    monitor = LoopMonitor()
    watching = asyncio.create_task(monitor.run())
    last: dict[str, float] = {}
    try:
        while not fleet.done():
            await asyncio.wait([fleet], timeout=PROGRESS_EVERY_S)
            if not fleet.done():
                print(_progress(stats, last), file=sys.stderr, flush=True)
        fleet.result()
    finally:
        watching.cancel()
        stats.loop_lag_ms = monitor.snapshot()["loop_lag_ms"]


def run_with_best_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def simulate_command(args: argparse.Namespace) -> int:
    """Run the simulator as configured by :func:`add_arguments`; the exit code."""
    tune_gc()
    try:
        units = read_tokens(args.tokens)
    except (OSError, ConfigError) as exc:
        print(f"simulate: cannot read tokens: {exc}", file=sys.stderr)
        return 2
    if args.vehicles is not None:
        if args.vehicles < 1:
            print("simulate: --vehicles must be ≥ 1", file=sys.stderr)
            return 2
        if args.vehicles > len(units):
            print(f"simulate: --vehicles {args.vehicles} but {args.tokens} has only "
                  f"{len(units)} tokens", file=sys.stderr)  # fmt: skip
            return 2
        units = units[: args.vehicles]
    if not units:
        print(f"simulate: no tokens in {args.tokens}", file=sys.stderr)
        return 2
    config = SimConfig(
        url=args.url,
        units=units,
        rate_hz=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        batch_size=args.batch,
        window=args.window,
        flood=args.flood,
        drops_per_hour=args.drops_per_hour,
        tire_interval_s=args.tire_interval,
        event_interval_s=args.event_interval,
        connect_rate_per_s=args.connect_rate,
        warmup_s=args.warmup,
        drain_s=args.drain,
    )
    try:
        config.validate()
    except ConfigError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    stats = FleetStats()
    mode = "flood" if config.flood else f"{config.rate_hz:g} Hz"
    print(f"simulating {len(units)} vehicles ({mode}, batch {config.batch_size}, "
          f"window {config.window}) → {config.url}", file=sys.stderr, flush=True)  # fmt: skip
    try:
        run_with_best_loop(collecting(_main(config, stats)))
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the handler was installed
        pass
    print(orjson.dumps(stats.snapshot(), option=orjson.OPT_INDENT_2).decode())
    if args.samples:
        Path(args.samples).write_bytes(orjson.dumps(stats.latency_samples()))
    if stats.ever_connected == 0:
        print("simulate: no vehicle could connect", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telematics.sim", description="Simulate a fleet of in-vehicle units."
    )
    add_arguments(parser)
    return simulate_command(parser.parse_args(argv))
