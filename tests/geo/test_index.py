"""ZoneIndex: containment and segment crossings, checked against brute-force shapely."""

from __future__ import annotations

import random

import pytest
import shapely
from shapely.geometry import Polygon

from telematics.geo.index import ZoneIndex
from telematics.geo.zones import Zone, ZoneError, corridor, disc, offset

LON, LAT = 120.60, 31.30


def at(east_m: float, north_m: float) -> tuple[float, float]:
    return offset(LON, LAT, east_m, north_m)


def ids(zones: list[Zone]) -> list[str]:
    return [z.id for z in zones]


def square(zone_id: str, east_m: float, north_m: float, half_m: float, kind: str = "depot") -> Zone:
    h = half_m
    corners = [at(east_m + dx, north_m + dy) for dx, dy in ((-h, -h), (h, -h), (h, h), (-h, h))]
    return Zone(zone_id, kind, zone_id, Polygon(corners))


@pytest.fixture
def index() -> ZoneIndex:
    return ZoneIndex(
        [
            Zone("SMALL", "school", "50 m disc", disc(*at(0, 0), 25)),
            square("TOWN", 0, 0, 2000, "hazmat_restricted"),  # overlaps SMALL
            Zone(
                "ROAD", "speed_limit", "ring", corridor([at(-5000, 3000), at(5000, 3000)], 40), 60
            ),
            square("FAR", 20_000, 0, 100),
        ]
    )


def test_containing(index: ZoneIndex) -> None:
    assert ids(index.containing(*at(0, 0))) == ["SMALL", "TOWN"]
    assert ids(index.containing(*at(0, 30))) == ["TOWN"]
    assert ids(index.containing(*at(1000, 3010))) == ["ROAD"]
    assert ids(index.containing(*at(1000, 3030))) == []
    assert ids(index.containing(*at(20_000, 100))) == ["FAR"]  # the boundary counts as inside
    assert index.containing(*at(50_000, 0)) == []


def test_crossed_finds_a_small_zone_between_fixes(index: ZoneIndex) -> None:
    # 120 km/h at 1 Hz: fixes 33 m apart, both outside the 50 m disc, off-centre by 20 m
    a, b = at(-16.7, 20), at(16.6, 20)
    assert "SMALL" not in ids(index.containing(*a)) + ids(index.containing(*b))
    assert ids(index.crossed(*a, *b)) == ["SMALL", "TOWN"]
    # skirting: 5 m outside the disc, never touches it
    assert ids(index.crossed(*at(-16.7, 30), *at(16.6, 30))) == ["TOWN"]
    # a zone wholly between two fixes 10 km apart
    assert ids(index.crossed(*at(15_000, 50), *at(25_000, -50))) == ["FAR"]
    # crossing a road corridor perpendicular, fixes on both sides
    assert ids(index.crossed(*at(-4500, 2950), *at(-4500, 3050))) == ["ROAD"]
    assert ids(index.crossed(*at(-4500, 2970), *at(-4500, 2975))) == []


def test_zero_length_segment_and_step(index: ZoneIndex) -> None:
    p = at(0, 0)
    assert ids(index.crossed(*p, *p)) == ["SMALL", "TOWN"]
    crossed, inside = index.step(*at(-16.7, 20), *at(0, 0))
    assert ids(crossed) == ["SMALL", "TOWN"] and ids(inside) == ["SMALL", "TOWN"]
    crossed, inside = index.step(*at(-16.7, 20), *at(16.6, 20))
    assert ids(crossed) == ["SMALL", "TOWN"] and ids(inside) == ["TOWN"]
    assert index.step(*at(30_000, 0), *at(31_000, 0)) == ([], [])


def test_empty_index_and_lookup(index: ZoneIndex) -> None:
    empty = ZoneIndex()
    assert len(empty) == 0 and empty.containing(LON, LAT) == []
    assert empty.crossed(LON, LAT, LON + 1, LAT) == [] and empty.step(LON, LAT, LON, LAT) == (
        [],
        [],
    )
    assert len(index) == 4 and "ROAD" in index and "NOPE" not in index
    road = index.get("ROAD")
    assert road is not None and road.speed_limit_kmh == 60
    assert index.get("NOPE") is None and ids(list(index)) == ids(list(index.zones))
    with pytest.raises(ZoneError, match="duplicate"):
        ZoneIndex([square("A", 0, 0, 10), square("A", 100, 0, 10)])


def test_agrees_with_brute_force() -> None:
    rnd = random.Random(3)

    def spot() -> tuple[float, float]:
        return at(rnd.uniform(-3000, 3000), rnd.uniform(-3000, 3000))

    zones = [Zone(f"D{n}", "school", "d", disc(*spot(), rnd.uniform(10, 400))) for n in range(150)]
    zones += [
        Zone(f"R{n}", "speed_limit", "r", corridor([spot(), spot(), spot()], 30), 50)
        for n in range(30)
    ]
    index = ZoneIndex(zones)
    for _ in range(400):
        a = at(rnd.uniform(-3500, 3500), rnd.uniform(-3500, 3500))
        b = offset(*a, rnd.uniform(-300, 300), rnd.uniform(-300, 300))
        segment = shapely.LineString([a, b])
        expect_crossed = [z.id for z in zones if z.geometry.intersects(segment)]
        expect_inside = [z.id for z in zones if z.geometry.intersects(shapely.Point(b))]
        assert ids(index.crossed(*a, *b)) == expect_crossed
        assert ids(index.containing(*b)) == expect_inside
        crossed, inside = index.step(*a, *b)
        assert (ids(crossed), ids(inside)) == (expect_crossed, expect_inside)
