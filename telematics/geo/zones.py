"""Geofence zones: the ``Zone`` value, GeoJSON in and out, and small metric helpers (pure).

Coordinates are WGS-84 longitude/latitude, as the units report them (GeoJSON order: lon
first). Maps of mainland China usually show GCJ-02 coordinates, shifted by a few hundred
metres; zones drawn on such a map must be converted to WGS-84 before they are imported.

There is no buffering at match time: a speed-limited road is a ``speed_limit`` zone whose
polygon is the corridor (``corridor()`` builds one from a centre line and a width).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon, Polygon, mapping, shape

from telematics.errors import TelematicsError, shown
from telematics.geo.context import ZONE_KINDS, ZoneRef
from telematics.ids import is_printable_id
from telematics.protocol.limits import MAX_ID_LEN

Geometry = Polygon | MultiPolygon

#: Metres per degree of latitude (mean Earth radius); a degree of longitude is this × cos(lat).
M_PER_DEG = 6_371_008.8 * math.pi / 180.0
MAX_NAME_LEN = 200


class ZoneError(TelematicsError):
    """A zone definition is invalid, or a zone operation cannot be done.

    ``field`` names the offending property (``geometry``, ``kind``, ``speed_limit_kmh`` …)
    and the message starts with the zone id when it is known.
    """

    def __init__(self, field: str, problem: str, zone_id: str | None = None) -> None:
        where = f"zone {zone_id!r}: " if zone_id else ""
        super().__init__(f"{where}{field}: {problem}")
        self.field = field
        self.problem = problem
        self.zone_id = zone_id


class UnknownZone(ZoneError):
    """No live zone has this id."""

    def __init__(self, zone_id: str) -> None:
        super().__init__("id", "no such zone", zone_id)


@dataclass(frozen=True, slots=True)
class Zone:
    """One geofence. Constructing it validates it (a ``Zone`` in hand is always valid).

    ``dwell_s``: how long a vehicle must stay inside before ``dwelling`` is reported;
    ``None`` means the tracker's default.
    """

    id: str
    kind: str
    name: str
    geometry: Geometry
    speed_limit_kmh: float | None = None
    dwell_s: float | None = None
    ref: ZoneRef = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_zone(self)
        # Prepared geometries make point-in-polygon tests O(log n) in the vertex count.
        shapely.prepare(self.geometry)
        object.__setattr__(
            self, "ref", ZoneRef(self.id, self.kind, self.name, self.speed_limit_kmh)
        )


def _check_zone(z: Zone) -> None:
    if not is_printable_id(z.id):
        raise ZoneError("id", f"1–{MAX_ID_LEN} printable characters, got {shown(z.id)}")
    zid = z.id
    if z.kind not in ZONE_KINDS:
        raise ZoneError("kind", f"must be one of {', '.join(ZONE_KINDS)}, got {shown(z.kind)}", zid)
    if not isinstance(z.name, str) or not z.name or len(z.name) > MAX_NAME_LEN:
        raise ZoneError("name", f"1–{MAX_NAME_LEN} characters, got {shown(z.name)}", zid)
    if "\x00" in z.name:  # PostgreSQL text cannot hold it (the API refuses it earlier)
        raise ZoneError("name", "contains a NUL character", zid)
    if z.speed_limit_kmh is not None:
        _check_number("speed_limit_kmh", z.speed_limit_kmh, zid)
        if not 0 < z.speed_limit_kmh <= 300:
            raise ZoneError(
                "speed_limit_kmh", f"must be > 0 and ≤ 300 km/h, got {z.speed_limit_kmh}", zid
            )
    elif z.kind == "speed_limit":
        raise ZoneError("speed_limit_kmh", "required for a speed_limit zone", zid)
    if z.dwell_s is not None:
        _check_number("dwell_s", z.dwell_s, zid)
        if z.dwell_s < 0:
            raise ZoneError("dwell_s", f"must be ≥ 0 seconds, got {z.dwell_s}", zid)
    _check_geometry(z.geometry, zid)


def _check_number(name: str, value: object, zone_id: str | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ZoneError(name, f"must be a finite number, got {value!r}", zone_id)


def _check_geometry(geom: object, zone_id: str | None) -> None:
    if not isinstance(geom, (Polygon, MultiPolygon)):
        kind = getattr(geom, "geom_type", type(geom).__name__)
        raise ZoneError("geometry", f"must be a Polygon or MultiPolygon, got {kind}", zone_id)
    if geom.is_empty:
        raise ZoneError("geometry", "is empty", zone_id)
    if shapely.has_z(geom):
        raise ZoneError("geometry", "must be 2-D (lon, lat)", zone_id)
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        raise ZoneError("geometry", "coordinates must be finite numbers", zone_id)
    lon_min, lat_min, lon_max, lat_max = geom.bounds
    if lon_min < -180 or lon_max > 180 or lat_min < -90 or lat_max > 90:
        raise ZoneError(
            "geometry",
            f"coordinates out of range (lon {lon_min:g}…{lon_max:g}, lat {lat_min:g}…{lat_max:g});"
            " GeoJSON order is [longitude, latitude]",
            zone_id,
        )
    if not geom.is_valid:
        reason = re.sub(
            r"\[(\S+) (\S+)\]", r" at lon \1, lat \2", str(shapely.is_valid_reason(geom))
        )
        raise ZoneError("geometry", f"invalid polygon: {reason}", zone_id)
    if geom.area <= 0:
        raise ZoneError("geometry", "has no area", zone_id)


# -- GeoJSON -------------------------------------------------------------------------------


def zone_from_geojson(feature: object) -> Zone:
    """A ``Zone`` from a GeoJSON Feature (properties: id, kind, name, speed_limit_kmh, dwell_s).

    The id may also be the Feature's own ``id``. Raises ``ZoneError`` naming the field.
    """
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ZoneError("type", "expected a GeoJSON Feature object")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise ZoneError("properties", "missing or not an object")
    zone_id = props.get("id", feature.get("id"))
    if isinstance(zone_id, int) and not isinstance(zone_id, bool):
        zone_id = str(zone_id)
    if not isinstance(zone_id, str) or not zone_id:
        raise ZoneError("id", f"missing or not a string, got {zone_id!r}")
    kind = props.get("kind")
    if not isinstance(kind, str):
        raise ZoneError("kind", f"must be one of {', '.join(ZONE_KINDS)}, got {kind!r}", zone_id)
    name = props.get("name", zone_id)
    if not isinstance(name, str):
        raise ZoneError("name", f"must be a string, got {name!r}", zone_id)
    limit = _optional_number(props, "speed_limit_kmh", zone_id)
    dwell = _optional_number(props, "dwell_s", zone_id)
    geometry = geometry_from_geojson(feature.get("geometry"), zone_id)
    return Zone(zone_id, kind, name, geometry, limit, dwell)


def _optional_number(props: dict[str, Any], name: str, zone_id: str) -> float | None:
    value = props.get(name)
    if value is None:
        return None
    _check_number(name, value, zone_id)
    return float(value)


def geometry_from_geojson(obj: object, zone_id: str | None = None) -> Geometry:
    """A validated Polygon/MultiPolygon from a GeoJSON geometry object."""
    if not isinstance(obj, dict):
        raise ZoneError("geometry", "missing or not a GeoJSON geometry object", zone_id)
    gtype = obj.get("type")
    if gtype not in ("Polygon", "MultiPolygon"):
        raise ZoneError("geometry", f"type must be Polygon or MultiPolygon, got {gtype!r}", zone_id)
    try:
        geom = shape(obj)
    except Exception as exc:  # shapely raises ValueError/TypeError/GEOSException/IndexError
        raise ZoneError("geometry", f"malformed coordinates ({exc})", zone_id) from None
    if not isinstance(geom, (Polygon, MultiPolygon)):  # pragma: no cover - shape() honours type
        raise ZoneError("geometry", f"must be a Polygon or MultiPolygon, got {geom.geom_type}")
    _check_geometry(geom, zone_id)
    return geom


def zone_to_geojson(zone: Zone) -> dict[str, Any]:
    """The zone as a GeoJSON Feature; ``zone_from_geojson`` gives back an equal zone."""
    return {
        "type": "Feature",
        "id": zone.id,
        "properties": {
            "id": zone.id,
            "kind": zone.kind,
            "name": zone.name,
            "speed_limit_kmh": zone.speed_limit_kmh,
            "dwell_s": zone.dwell_s,
        },
        "geometry": geometry_to_geojson(zone.geometry),
    }


def geometry_to_geojson(geom: Geometry) -> dict[str, Any]:
    out: dict[str, Any] = _lists(mapping(geom))
    return out


def _lists(value: Any) -> Any:
    """``mapping()`` gives tuples; JSON wants lists (and equal dicts after a round trip)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    return value


def zones_from_feature_collection(doc: object) -> list[Zone]:
    """Zones of a FeatureCollection (or one Feature); every error is reported, by position."""
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = {"type": "FeatureCollection", "features": [doc]}
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ZoneError("type", "expected a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise ZoneError("features", "missing or not a list")
    zones: list[Zone] = []
    problems: list[str] = []
    seen: set[str] = set()
    for n, feature in enumerate(features):
        try:
            zone = zone_from_geojson(feature)
        except ZoneError as exc:
            problems.append(f"features[{n}]: {exc}")
            continue
        if zone.id in seen:
            problems.append(f"features[{n}]: zone {zone.id!r}: id: duplicate in this file")
            continue
        seen.add(zone.id)
        zones.append(zone)
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ZoneError("features", f"{len(problems)} invalid: {shown}{more}")
    return zones


def feature_collection(zones: Iterable[Zone]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [zone_to_geojson(z) for z in zones]}


# -- metric helpers (local equirectangular projection; fine for zones up to tens of km) -----


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m``/``north_m`` metres from (lon, lat)."""
    return (
        lon + east_m / (M_PER_DEG * math.cos(math.radians(lat))),
        lat + north_m / M_PER_DEG,
    )


def distance_m(lon0: float, lat0: float, lon1: float, lat1: float) -> float:
    """Approximate ground distance in metres (equirectangular; < 0.1 % error below 100 km)."""
    kx = M_PER_DEG * math.cos(math.radians((lat0 + lat1) / 2))
    return math.hypot((lon1 - lon0) * kx, (lat1 - lat0) * M_PER_DEG)


def _metric(geom: shapely.Geometry, lon0: float, lat0: float, inverse: bool) -> Any:
    kx = M_PER_DEG * math.cos(math.radians(lat0))

    def project(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.empty_like(xy)
        if inverse:
            out[:, 0] = lon0 + xy[:, 0] / kx
            out[:, 1] = lat0 + xy[:, 1] / M_PER_DEG
        else:
            out[:, 0] = (xy[:, 0] - lon0) * kx
            out[:, 1] = (xy[:, 1] - lat0) * M_PER_DEG
        return out

    return shapely.transform(geom, project)


def disc(lon: float, lat: float, radius_m: float, quad_segs: int = 16) -> Polygon:
    """A circle of ``radius_m`` around (lon, lat), as a polygon."""
    centre = _metric(shapely.Point(lon, lat), lon, lat, inverse=False)
    out: Polygon = _metric(centre.buffer(radius_m, quad_segs=quad_segs), lon, lat, inverse=True)
    return out


def corridor(line: Sequence[tuple[float, float]], width_m: float) -> Polygon:
    """The band ``width_m`` wide around a centre line of (lon, lat) points, flat-ended."""
    if len(line) < 2:
        raise ZoneError("geometry", "a corridor needs at least two points")
    lon0, lat0 = line[0]
    centre = _metric(shapely.LineString(line), lon0, lat0, inverse=False)
    band = centre.buffer(width_m / 2, cap_style="flat", join_style="round")
    out: Polygon = _metric(band, lon0, lat0, inverse=True)
    return out
