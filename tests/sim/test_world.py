"""Routes and motion: plausible speeds, positions near Suzhou, consistent odometer."""

from __future__ import annotations

import random

import pytest

from telematics.fleet import VEHICLE_CLASSES
from telematics.sim.world import (
    CENTER,
    CLASS_ROUTES,
    ROUTES,
    SPEED_LIMITS,
    Motion,
    distance_km,
    pick_route,
)

MAX_KM_FROM_SUZHOU = 60.0


def test_routes_are_closed_loops_near_suzhou() -> None:
    for route in ROUTES.values():
        assert route.segments, route.name
        assert route.length_m > 5_000, route.name
        for seg in route.segments:
            assert seg.length_m > 0
            assert 0.0 <= seg.heading_deg < 360.0
            assert distance_km(*CENTER, seg.lat0, seg.lon0) < MAX_KM_FROM_SUZHOU
        # consecutive segments join up, including the last back to the first
        segs = route.segments
        for a, b in zip(segs, segs[1:] + segs[:1], strict=True):
            assert a.lat0 + a.dlat == pytest.approx(b.lat0, abs=1e-9)
            assert a.lon0 + a.dlon == pytest.approx(b.lon0, abs=1e-9)


def test_every_class_has_routes() -> None:
    for vehicle_class in VEHICLE_CLASSES:
        assert CLASS_ROUTES[vehicle_class]
        assert pick_route(vehicle_class, random.Random(1)).name in ROUTES


@pytest.mark.parametrize("vehicle_class", VEHICLE_CLASSES)
def test_motion_is_plausible(vehicle_class: str) -> None:
    limits = SPEED_LIMITS[vehicle_class]
    for seed in range(4):
        rng = random.Random(seed)
        m = Motion(pick_route(vehicle_class, rng), vehicle_class, rng, speed_factor=1.05)
        odo = m.odometer_km
        by_road: dict[str, list[float]] = {}
        stopped = 0
        for _ in range(3 * 3600):
            lat, lon = m.lat, m.lon
            m.step(1.0)
            assert distance_km(*CENTER, m.lat, m.lon) < MAX_KM_FROM_SUZHOU
            assert 0.0 <= m.heading_deg < 360.0
            assert m.speed_kmh >= 0.0
            assert m.speed_kmh <= limits[m.road] * 1.06 + 0.5
            # never jumps: at most the distance covered at the current speed (+ GNSS noise)
            assert distance_km(lat, lon, m.lat, m.lon) * 1000 <= m.speed_kmh / 3.6 + 10
            assert m.odometer_km >= odo
            odo = m.odometer_km
            if not m.ignition:
                assert m.speed_kmh == 0.0
            if m.speed_kmh < 1.0:
                stopped += 1
            by_road.setdefault(m.road, []).append(m.speed_kmh)
        assert stopped > 0, "vehicles stop now and then (lights, stops, depot)"
        assert m.odometer_km > odo - 1  # sanity
        city = [v for v in by_road.get("city", []) if v > 5]
        if city:
            assert 15 < sum(city) / len(city) < 50
        fast = [v for v in by_road.get("expressway", []) if v > 40]
        if len(fast) > 600:
            mean = sum(fast) / len(fast)
            assert 0.7 * limits["expressway"] < mean <= limits["expressway"] * 1.05


def test_motion_accelerates_and_brakes_gently() -> None:
    rng = random.Random(7)
    m = Motion(ROUTES["g2-kunshan"], "coach", rng)
    prev = m.speed_kmh
    for _ in range(7200):
        m.step(1.0)
        delta = (m.speed_kmh - prev) / 3.6
        assert -1.31 * 1.0 - 1e-9 <= delta or m.speed_kmh == 0.0  # braking, or arrived at a stop
        assert delta <= 0.9 + 1e-9
        prev = m.speed_kmh


def test_motion_is_deterministic() -> None:
    def trace(seed: int) -> list[tuple[float, float, float]]:
        rng = random.Random(seed)
        m = Motion(pick_route("bus", rng), "bus", rng)
        out = []
        for _ in range(500):
            m.step(1.0)
            out.append((m.lat, m.lon, m.speed_kmh))
        return out

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)
