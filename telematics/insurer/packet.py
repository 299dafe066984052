"""Evidence packets (pure): what a claim's vehicle did around the time of loss, as JSON
data and as one zip archive.

The packet holds the track (a GeoJSON FeatureCollection: the LineString of fixes and
the reported place) and speed trace of ±``EVIDENCE_SPAN``, tire readings, device events,
alarms with their lifecycle (audit), interventions with their delivery history, and the
driver at the time. Without the 'locations' consent there is no track and no position.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from telematics.insurer.store.evidence import EvidenceRows

EVIDENCE_SPAN = timedelta(minutes=15)
FORMAT = "telematics-evidence/1"
_POSITION_KEYS = ("lat", "lon")


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys), so the stored hash can be recomputed."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def _iso(value: datetime) -> str:
    return value.isoformat()


def _plain(row: Mapping[str, Any], locations: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if not locations and key in _POSITION_KEYS:
            continue
        out[key] = _iso(value) if isinstance(value, datetime) else value
    return out


def _driver_at(fixes: list[dict[str, Any]], at: datetime) -> str | None:
    driver = None
    for fix in fixes:
        if fix["ts"] > at:
            break
        driver = fix["driver_id"] or driver
    if driver is None:  # nothing before: the first fix after
        driver = next((f["driver_id"] for f in fixes if f["driver_id"]), None)
    return driver


def track(fixes: Iterable[Mapping[str, Any]], place: Mapping[str, Any] | None) -> dict[str, Any]:
    """GeoJSON: the driven line (coordinates [lon, lat], times alongside) and the place."""
    points = list(fixes)
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {
                "type": "LineString",
                "coordinates": [[p["lon"], p["lat"]] for p in points],
            },
            "properties": {
                "role": "track",
                "times": [_iso(p["ts"]) for p in points],
                "speeds_kmh": [p["speed_kmh"] for p in points],
            },
        }
    ]
    if place is not None and place.get("lat") is not None and place.get("lon") is not None:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [place["lon"], place["lat"]]},
                "properties": {"role": "reported_place", "place": place.get("place")},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def build_packet(
    claim: Mapping[str, Any],
    rows: EvidenceRows,
    *,
    span: tuple[datetime, datetime],
    locations: bool,
    built_at: datetime,
) -> dict[str, Any]:
    occurred_at: datetime = claim["occurred_at"]
    statuses: dict[str, list[dict[str, Any]]] = {}
    for s in rows.statuses:
        statuses.setdefault(s["intervention_id"], []).append(
            {"status": s["status"], "at": _iso(s["at"]), "source": s["source"]}
        )
    audit: dict[str, list[dict[str, Any]]] = {}
    for a in rows.audit:
        audit.setdefault(a["alarm_id"], []).append(_plain(a, True))
    drivers = sorted({f["driver_id"] for f in rows.telemetry if f["driver_id"]})
    place = {"lat": claim.get("lat"), "lon": claim.get("lon"), "place": claim.get("place")}
    return {
        "format": FORMAT,
        "claim_id": claim["id"],
        "vehicle": rows.vehicle,
        "occurred_at": _iso(occurred_at),
        "window": {"from": _iso(span[0]), "until": _iso(span[1])},
        "built_at": _iso(built_at),
        "locations_included": locations,
        "driver": {"at_time_of_loss": _driver_at(rows.telemetry, occurred_at), "seen": drivers},
        "track": track(rows.telemetry, place) if locations else None,
        "speed_trace": [
            {"ts": _iso(f["ts"]), "speed_kmh": f["speed_kmh"], "seq": f["seq"]}
            for f in rows.telemetry
        ],
        "tire_readings": [_plain(t, locations) for t in rows.tires],
        "events": [_plain(e, locations) for e in rows.events],
        "alarms": [
            {**_plain(a, locations), "lifecycle": audit.get(a["id"], [])} for a in rows.alarms
        ],
        "interventions": [
            {**_plain(i, locations), "delivery": statuses.get(i["id"], [])}
            for i in rows.interventions
        ],
    }


def _csv(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def archive(claim: Mapping[str, Any], packet: Mapping[str, Any]) -> bytes:
    """One zip: the packet in parts, and a manifest with the SHA-256 of every file."""
    files: dict[str, bytes] = {
        "claim.json": dumps(dict(claim)),
        "packet.json": dumps(dict(packet)),
        "speed_trace.csv": _csv(packet["speed_trace"], ("ts", "seq", "speed_kmh")),
        "tire_readings.csv": _csv(
            packet["tire_readings"], ("ts", "seq", "pos", "kpa", "temp_c", "sensor_battery_pct")
        ),
        "events.json": dumps(packet["events"]),
        "alarms.json": dumps(packet["alarms"]),
        "interventions.json": dumps(packet["interventions"]),
    }
    if packet.get("track") is not None:
        files["track.geojson"] = dumps(packet["track"])
    manifest = {
        "format": FORMAT,
        "claim_id": packet["claim_id"],
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in [*files.items(), ("manifest.json", dumps(manifest))]:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buffer.getvalue()
