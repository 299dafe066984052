"""``telematics`` command line: serve, migrate, vehicle, zone, report, demo, simulate."""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import sys
from typing import TypeVar

from telematics.cliargs import port_number, positive_float, positive_int
from telematics.config import Settings, load_settings
from telematics.csvfile import file_errors
from telematics.errors import TelematicsError
from telematics.fleet import VEHICLE_CLASSES
from telematics.store import registry
from telematics.store.database import connect, database_url, run_with_db
from telematics.store.migrate import migrate

T = TypeVar("T")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from telematics import server
    from telematics.insurer.worker import WorkerSettings
    from telematics.runtime import install_fast_loop

    settings = settings.with_overrides(
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        workers=args.workers if args.workers is not None else settings.workers,
    )
    # Read here, not first in each worker's background task: a bad value stops `serve`
    # with one line instead of silently leaving insurer webhooks undelivered.
    WorkerSettings.from_env()
    url = database_url(settings)
    if args.reuse_port:
        install_fast_loop()
        asyncio.run(server.serve_forever(settings, url, reuse_port=True))
        return 0
    return server.run_workers(settings, url)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> list[str]:
        conn = await connect(settings)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    applied = asyncio.run(run())
    print(f"applied: {', '.join(applied) or 'nothing (up to date)'}", file=sys.stderr)
    return 0


def cmd_vehicle_add(args: argparse.Namespace, settings: Settings) -> int:
    # Spaces trimmed and an empty plate is none, as in `vehicle import`.
    plate = (args.plate or "").strip() or None
    new = registry.NewVehicle(args.id.strip(), args.fleet.strip(), args.vehicle_class, plate)
    pairs = run_with_db(settings, lambda conn: registry.add_vehicles(conn, [new]))
    print(pairs[0][1])  # only the token on stdout, so scripts can capture it
    return 0


def read_vehicles_csv(path: str) -> list[registry.NewVehicle]:
    """Every row of an ``id,fleet,class[,plate]`` file, checked; a ``TelematicsError``
    naming the file and line of the first bad one, so the import stores all or nothing."""
    vehicles: list[registry.NewVehicle] = []
    first_line: dict[str, int] = {}
    with file_errors(path, TelematicsError), open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, strict=True)
        missing = {"id", "fleet", "class"} - set(reader.fieldnames or ())
        if missing:
            raise TelematicsError(f"{path}: missing columns {', '.join(sorted(missing))}")
        width = len(reader.fieldnames or ())
        for row in reader:
            where = f"{path}:{reader.line_num}"
            # DictReader files surplus fields under None and fills short rows with None
            if None in row or None in row.values():
                raise TelematicsError(f"{where}: expected {width} fields, like the header")
            new = registry.NewVehicle(
                row["id"].strip(),
                row["fleet"].strip(),
                row["class"].strip(),
                (row.get("plate") or "").strip() or None,
            )
            try:
                registry.check_new_vehicle(new)
            except TelematicsError as exc:
                raise TelematicsError(f"{where}: {exc}") from None
            if new.id in first_line:
                raise TelematicsError(
                    f"{where}: vehicle {new.id} already on line {first_line[new.id]}"
                )
            first_line[new.id] = reader.line_num
            vehicles.append(new)
    return vehicles


def cmd_vehicle_import(args: argparse.Namespace, settings: Settings) -> int:
    vehicles = read_vehicles_csv(args.file)
    pairs = run_with_db(settings, lambda conn: registry.add_vehicles(conn, vehicles))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerows(pairs)
    print(f"registered {len(pairs)} vehicles", file=sys.stderr)
    return 0


def cmd_vehicle_revoke(args: argparse.Namespace, settings: Settings) -> int:
    count = run_with_db(settings, lambda conn: registry.revoke_vehicle(conn, args.id))
    print(f"revoked {count} token(s) of {args.id}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from telematics.demo import run_demo

    return run_demo(args, settings)


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from telematics.sim import simulate_command

    return simulate_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telematics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (device endpoint, APIs)")
    serve.add_argument("--host", help="listen address (TELEMATICS_HOST, default 127.0.0.1)")
    serve.add_argument(
        "--port", type=port_number, help="listen port (TELEMATICS_PORT, default 8080)"
    )
    serve.add_argument(
        "--workers", type=positive_int, help="processes sharing the port (default 1)"
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply pending SQL migrations").set_defaults(func=cmd_migrate)

    vehicle = sub.add_parser("vehicle", help="register and revoke vehicles").add_subparsers(
        dest="vehicle_command", required=True
    )
    add = vehicle.add_parser("add", help="register one vehicle; prints its device token")
    add.add_argument("id")
    add.add_argument("--fleet", required=True)
    add.add_argument("--class", dest="vehicle_class", required=True, choices=VEHICLE_CLASSES)
    add.add_argument("--plate")
    add.set_defaults(func=cmd_vehicle_add)
    imp = vehicle.add_parser("import", help="register vehicles from CSV id,fleet,class,plate")
    imp.add_argument("file")
    imp.set_defaults(func=cmd_vehicle_import)
    revoke = vehicle.add_parser("revoke", help="revoke a vehicle's device tokens")
    revoke.add_argument("id")
    revoke.set_defaults(func=cmd_vehicle_revoke)

    demo = sub.add_parser("demo", help="embedded database + server + simulated fleet, live")
    demo.add_argument("--vehicles", type=positive_int, default=200)
    demo.add_argument(
        "--rate", type=positive_float, default=1.0, help="telemetry items/s per vehicle"
    )
    demo.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    demo.add_argument("--port", type=port_number, default=None)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=cmd_demo)

    from telematics.sim import add_arguments

    simulate = sub.add_parser("simulate", help="simulated in-vehicle units over WebSockets")
    add_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)

    from telematics.geo.cli import add_arguments as add_zone_arguments

    add_zone_arguments(sub)

    from telematics.report.cli import add_arguments as add_report_arguments

    add_report_arguments(sub)

    from telematics.api.cli import add_arguments as add_user_arguments

    add_user_arguments(sub)

    from ml.cli import add_ml_parser

    add_ml_parser(sub)

    from telematics.insurer.cli import add_arguments as add_insurer_arguments

    add_insurer_arguments(sub)
    return parser


def _nul_argument(args: argparse.Namespace) -> str | None:
    """The first argument holding a NUL character: PostgreSQL cannot store one in text."""
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and "\x00" in v for v in values):
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (name := _nul_argument(args)) is not None:
        parser.error(f"argument {name}: must not contain a NUL character")
    try:
        settings = load_settings()
    except TelematicsError as exc:  # a bad TELEMATICS_* variable: every command reads them
        print(f"error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its INFO lines drown the demo
    try:
        code: int = args.func(args, settings)
    except TelematicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
