"""Zone values and GeoJSON: round trips, validation with messages that name the field."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon

from telematics.errors import TelematicsError
from telematics.geo.context import ZONE_KINDS, ZoneRef
from telematics.geo.zones import (
    Zone,
    ZoneError,
    corridor,
    disc,
    distance_m,
    feature_collection,
    offset,
    zone_from_geojson,
    zone_to_geojson,
    zones_from_feature_collection,
)

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "zones-suzhou.geojson"
SQUARE = [[120.58, 31.30], [120.59, 31.30], [120.59, 31.31], [120.58, 31.31], [120.58, 31.30]]


def feature(**props: Any) -> dict[str, Any]:
    geometry = props.pop("geometry", {"type": "Polygon", "coordinates": [SQUARE]})
    base: dict[str, Any] = {"id": "Z1", "kind": "school", "name": "实验小学"}
    base.update(props)
    return {"type": "Feature", "properties": base, "geometry": geometry}


def error_of(doc: object) -> ZoneError:
    with pytest.raises(ZoneError) as caught:
        zone_from_geojson(doc)
    assert isinstance(caught.value, TelematicsError)
    return caught.value


def test_round_trip_keeps_every_field() -> None:
    zone = zone_from_geojson(feature(speed_limit_kmh=30, dwell_s=120))
    assert zone == Zone("Z1", "school", "实验小学", Polygon(SQUARE), 30.0, 120.0)
    assert zone.ref == ZoneRef("Z1", "school", "实验小学", 30.0)
    doc = zone_to_geojson(zone)
    assert doc["properties"] == {
        "id": "Z1",
        "kind": "school",
        "name": "实验小学",
        "speed_limit_kmh": 30.0,
        "dwell_s": 120.0,
    }
    assert doc["geometry"] == {"type": "Polygon", "coordinates": [SQUARE]}
    assert zone_from_geojson(json.loads(json.dumps(doc))) == zone


def test_multipolygon_feature_id_and_default_name() -> None:
    other = [[[x + 0.05, y] for x, y in SQUARE]]
    doc = {
        "type": "Feature",
        "id": "MP",
        "properties": {"kind": "flood_prone"},
        "geometry": {"type": "MultiPolygon", "coordinates": [[SQUARE], *[other]]},
    }
    zone = zone_from_geojson(doc)
    assert zone.id == "MP" and zone.name == "MP" and isinstance(zone.geometry, MultiPolygon)
    assert zone.speed_limit_kmh is None and zone.dwell_s is None
    assert zone_from_geojson(zone_to_geojson(zone)) == zone


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (feature(kind="hazmat-zone"), "kind", ["hazmat_restricted", "'hazmat-zone'"]),
        (feature(kind=None), "kind", ["depot"]),
        (feature(speed_limit_kmh=0), "speed_limit_kmh", ["> 0"]),
        (feature(speed_limit_kmh=-30), "speed_limit_kmh", ["> 0"]),
        (feature(speed_limit_kmh="60"), "speed_limit_kmh", ["number"]),
        (feature(speed_limit_kmh=True), "speed_limit_kmh", ["number"]),
        (feature(kind="speed_limit"), "speed_limit_kmh", ["required"]),
        (feature(dwell_s=-1), "dwell_s", ["≥ 0"]),
        (feature(id=""), "id", ["missing"]),
        (feature(id="x" * 65), "id", ["printable"]),
        (feature(name=7), "name", ["string"]),
        (
            feature(
                geometry={
                    "type": "Polygon",
                    "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                }
            ),
            "geometry",
            ["Self-intersection"],
        ),
        (
            feature(geometry={"type": "Polygon", "coordinates": [[[y, x] for x, y in SQUARE]]}),
            "geometry",
            ["out of range", "[longitude, latitude]"],
        ),
        (
            feature(geometry={"type": "Point", "coordinates": [120.58, 31.30]}),
            "geometry",
            ["Polygon or MultiPolygon", "'Point'"],
        ),
        (
            feature(
                geometry={"type": "Polygon", "coordinates": [[[120.58, 31.30], [120.59, 31.3]]]}
            ),
            "geometry",
            ["malformed"],
        ),
        (
            feature(geometry={"type": "Polygon", "coordinates": [["a", "b", "c", "d"]]}),
            "geometry",
            ["malformed"],
        ),
        (feature(geometry={"type": "Polygon", "coordinates": []}), "geometry", ["empty"]),
        (feature(geometry=None), "geometry", ["missing"]),
        ({"type": "Feature", "geometry": None}, "properties", ["missing"]),
        ({"type": "FeatureCollection"}, "type", ["Feature"]),
        ([], "type", ["Feature"]),
    ],
)
def test_invalid_geojson_names_the_field(doc: object, field: str, words: list[str]) -> None:
    err = error_of(doc)
    assert err.field == field
    assert f"{field}: " in str(err)
    for word in words:
        assert word in str(err), str(err)
    if isinstance(doc, dict) and doc.get("properties", {}).get("id"):
        assert str(err).startswith("zone 'Z1': ") or field == "id"


def test_constructor_validates_too() -> None:
    with pytest.raises(ZoneError, match="kind: must be one of"):
        Zone("A", "parking", "p", Polygon(SQUARE))
    with pytest.raises(ZoneError, match="geometry: must be a Polygon"):
        Zone("A", "depot", "p", shapely.LineString(SQUARE))  # type: ignore[arg-type]
    with pytest.raises(ZoneError, match="geometry: must be 2-D"):
        Zone("A", "depot", "p", Polygon([(x, y, 5.0) for x, y in SQUARE]))


def test_feature_collection_reports_every_bad_feature_by_position() -> None:
    good = feature(id="A")
    bad_kind, bad_dwell = feature(id="B", kind="mall"), feature(id="C", dwell_s="x")
    doc = {"type": "FeatureCollection", "features": [good, bad_kind, good, bad_dwell]}
    with pytest.raises(ZoneError) as caught:
        zones_from_feature_collection(doc)
    msg = str(caught.value)
    assert msg.startswith("features: 3 invalid: ")
    assert "features[1]: zone 'B': kind:" in msg
    assert "features[2]: zone 'A': id: duplicate" in msg
    assert "features[3]: zone 'C': dwell_s:" in msg
    with pytest.raises(ZoneError, match="features: missing"):
        zones_from_feature_collection({"type": "FeatureCollection"})
    assert [z.id for z in zones_from_feature_collection(good)] == ["A"]
    zones = zones_from_feature_collection(feature_collection([zone_from_geojson(good)]))
    assert zones == [zone_from_geojson(good)]


def test_sample_file_is_valid_and_covers_every_kind() -> None:
    zones = zones_from_feature_collection(json.loads(SAMPLE.read_text(encoding="utf-8")))
    assert len(zones) >= 8
    assert {z.kind for z in zones} == set(ZONE_KINDS)
    limits = [z.speed_limit_kmh or 0 for z in zones if z.kind == "speed_limit"]
    assert sorted(limits) == [60.0, 100.0]
    assert sum(z.kind == "school" for z in zones) == 2
    for z in zones:  # all around Suzhou
        lon, lat = z.geometry.centroid.x, z.geometry.centroid.y
        assert distance_m(120.62, 31.31, lon, lat) < 30_000, z.id
    tunnel = next(z for z in zones if z.kind == "tunnel")
    assert distance_m(120.72, 31.27, tunnel.geometry.centroid.x, tunnel.geometry.centroid.y) < 2000


def test_metric_helpers() -> None:
    lon, lat = 120.58, 31.30
    east = offset(lon, lat, 1000, 0)
    north = offset(lon, lat, 0, 1000)
    assert distance_m(lon, lat, *east) == pytest.approx(1000, rel=1e-6)
    assert distance_m(lon, lat, *north) == pytest.approx(1000, rel=1e-6)
    circle = disc(lon, lat, 25)
    assert circle.contains(shapely.Point(*offset(lon, lat, 24, 0)))
    assert not circle.contains(shapely.Point(*offset(lon, lat, 0, 26)))
    band = corridor([(lon, lat), offset(lon, lat, 2000, 0)], 40)
    assert band.contains(shapely.Point(*offset(lon, lat, 1000, 19)))
    assert not band.contains(shapely.Point(*offset(lon, lat, 1000, 21)))
    assert not band.contains(shapely.Point(*offset(lon, lat, -1, 0)))  # flat ends
    kx = math.cos(math.radians(lat))
    assert band.area * kx == pytest.approx(2000 * 40 / (6_371_008.8 * math.pi / 180) ** 2, rel=1e-3)
    with pytest.raises(ZoneError, match="two points"):
        corridor([(lon, lat)], 10)
