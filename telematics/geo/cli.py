"""``telematics zone import|list|remove``: manage geofence zones from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TypeVar

import orjson

from telematics.config import Settings
from telematics.geo.zones import ZoneError, feature_collection, zones_from_feature_collection
from telematics.store import zones as zone_store
from telematics.store.database import run_with_db

T = TypeVar("T")


def add_arguments(subparsers: Any) -> None:
    """Register the ``zone`` command group on the top-level ``add_subparsers()`` object."""
    zone = subparsers.add_parser("zone", help="geofence zones: import, list, remove")
    zone.set_defaults(func=zone_command)
    sub = zone.add_subparsers(dest="zone_command", required=True)
    imp = sub.add_parser(
        "import", help="add or replace zones from a GeoJSON FeatureCollection (lon/lat WGS-84)"
    )
    imp.add_argument(
        "file", help="FILE.geojson; properties id, kind, name, speed_limit_kmh, dwell_s"
    )
    lst = sub.add_parser("list", help="list live zones")
    lst.add_argument("--json", action="store_true", help="as a GeoJSON FeatureCollection")
    rm = sub.add_parser("remove", help="delete a zone (kept in the database for the record)")
    rm.add_argument("id")


def _import(args: argparse.Namespace, settings: Settings) -> int:
    try:
        with open(args.file, "rb") as handle:
            doc = orjson.loads(handle.read())
    except OSError as exc:
        raise ZoneError("file", f"{args.file}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ZoneError("file", f"{args.file}: not JSON ({exc})") from None
    zones = zones_from_feature_collection(doc)
    results = run_with_db(settings, lambda conn: zone_store.import_zones(conn, zones))
    for zone_id, outcome in results:
        print(f"{zone_id} {outcome}")
    counts = {o: sum(1 for _, r in results if r == o) for o in ("added", "replaced", "unchanged")}
    summary = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    print(f"imported {len(results)} zones ({summary or 'none'})", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    zones = run_with_db(settings, zone_store.list_zones)
    if args.json:
        sys.stdout.write(orjson.dumps(feature_collection(zones)).decode() + "\n")
        return 0
    for z in zones:
        limit = f"{z.speed_limit_kmh:g}km/h" if z.speed_limit_kmh is not None else "-"
        dwell = f"{z.dwell_s:g}s" if z.dwell_s is not None else "-"
        print(f"{z.id}\t{z.kind}\t{limit}\t{dwell}\t{z.name}")
    return 0


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    run_with_db(settings, lambda conn: zone_store.delete_zone(conn, args.id))
    print(f"removed zone {args.id}", file=sys.stderr)
    return 0


_COMMANDS = {"import": _import, "list": _list, "remove": _remove}


def zone_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``zone import|list|remove``; errors are ``TelematicsError`` (printed by ``main``)."""
    return _COMMANDS[args.zone_command](args, settings)
