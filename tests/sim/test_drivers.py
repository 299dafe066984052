"""Driver risk and the event generator: kinds, situations, rates, levels, interval mode."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from telematics.protocol.messages import ADAS_KINDS, EVENT_KINDS
from telematics.sim.drivers import (
    BASE_RATES_PER_H,
    EventGenerator,
    describe,
    make_driver,
)


def test_every_rate_is_a_protocol_kind() -> None:
    assert set(BASE_RATES_PER_H) <= EVENT_KINDS


def test_drivers_differ_and_are_seeded() -> None:
    a = [make_driver(i, random.Random(i)) for i in range(200)]
    b = [make_driver(i, random.Random(i)) for i in range(200)]
    assert a == b
    risks = sorted(d.risk for d in a)
    assert risks[-1] / risks[0] > 5  # lognormal spread: a few risky drivers
    assert 0.8 < sum(risks) / len(risks) < 1.25  # mean about 1
    assert a[117].id == "D-0117"


def _drive(gen: EventGenerator, hours: float, speed: float, night: bool = False) -> Counter[str]:
    kinds: Counter[str] = Counter()
    t = 0.0
    for _ in range(int(hours * 3600)):
        t += 1.0
        kind = gen.step(1.0, t, speed, True, night)
        if kind is not None:
            kinds[kind] += 1
    return kinds


def test_rates_per_driving_hour_match_the_base_rates() -> None:
    kinds: Counter[str] = Counter()
    hours = 0.0
    for i in range(40):
        rng = random.Random(i)
        gen = EventGenerator(make_driver(i, rng), rng)
        kinds += _drive(gen, 10.0, 60.0)
        hours += 10.0
    assert kinds["lane_departure"] / hours == pytest.approx(2.0, rel=0.35)
    assert kinds["headway_too_close"] / hours == pytest.approx(1.5, rel=0.35)
    assert kinds["yawning"] / hours == pytest.approx(1.0, rel=0.4)
    assert 0.1 < kinds["fatigue"] / hours < 0.6
    assert kinds["rollover"] == 0


def test_only_possible_kinds_in_each_situation() -> None:
    rng = random.Random(1)
    gen = EventGenerator(make_driver(1, rng), rng)
    town = _drive(gen, 200.0, 20.0)
    assert town and not set(town) & set(ADAS_KINDS)  # ADAS needs ≥ 30 km/h
    standing = _drive(gen, 200.0, 0.0)
    assert set(standing) <= {"panic_button", "camera_blocked", "driver_absent", "smoking"}
    t = 0.0
    for _ in range(100_000):
        t += 1.0
        assert gen.step(1.0, t, 80.0, False, False) is None  # ignition off


def test_night_and_speed_raise_fatigue() -> None:
    def fatigue(speed: float, night: bool) -> int:
        rng = random.Random(5)
        gen = EventGenerator(make_driver(5, rng), rng)
        return _drive(gen, 300.0, speed, night)["fatigue"]

    assert fatigue(60.0, True) > 2 * fatigue(60.0, False)
    assert fatigue(95.0, False) > fatigue(60.0, False)


def test_levels_and_attrs() -> None:
    rng = random.Random(9)
    fatigue = [describe("fatigue", rng, 80.0, 100.0) for _ in range(2000)]
    share2 = sum(d.level == 2 for d in fatigue) / len(fatigue)
    assert share2 == pytest.approx(0.2, abs=0.04)
    for d in fatigue:
        assert (d.attrs["eye_closure_s"] >= 2.0) == (d.level == 2)
    for kind in sorted(EVENT_KINDS):
        d = describe(kind, rng, 70.0, 80.0)
        assert d.kind == kind
        assert d.level in (None, 1, 2)
        assert isinstance(d.attrs, dict)
    fcw = describe("forward_collision", rng, 70.0, 80.0)
    assert (fcw.attrs["ttc_s"] < 1.5) == (fcw.level == 2)
    over = describe("overspeed", rng, 70.0, 80.0)
    assert over.speed_kmh is not None and over.speed_kmh > 80.0
    assert over.attrs["limit_kmh"] == 80.0


def test_interval_mode_raises_one_event_per_interval() -> None:
    rng = random.Random(3)
    gen = EventGenerator(make_driver(3, rng), rng, interval_s=(10.0, 30.0), now=0.0)
    times = []
    t = 0.0
    for _ in range(36_000):
        t += 0.1
        kind = gen.step(0.1, t, 70.0, True, False)
        if kind is not None:
            assert kind in EVENT_KINDS
            times.append(t)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(9.9 <= g <= 30.2 for g in gaps)
    assert len(times) == pytest.approx(3600 / 20, rel=0.15)
