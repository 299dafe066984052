"""GeofenceTracker timelines: enter / exit / dwell from fixes, as a vehicle would send them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import Polygon

from telematics.geo.context import NO_ZONES, ZoneContext, ZoneRef
from telematics.geo.index import ZoneIndex
from telematics.geo.tracker import GeofenceTracker
from telematics.geo.zones import Zone, corridor, disc, offset

LON, LAT = 120.60, 31.30
T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
MPS_120 = 120 / 3.6  # 33.3 m per fix at 1 Hz


def at(east_m: float, north_m: float) -> tuple[float, float]:
    return offset(LON, LAT, east_m, north_m)


def square(
    zone_id: str,
    east_m: float,
    north_m: float,
    half_m: float,
    kind: str = "depot",
    limit: float | None = None,
    dwell_s: float | None = None,
) -> Zone:
    h = half_m
    corners = [at(east_m + dx, north_m + dy) for dx, dy in ((-h, -h), (h, -h), (h, h), (-h, h))]
    return Zone(zone_id, kind, zone_id, Polygon(corners), limit, dwell_s)


SMALL = Zone("SMALL", "school", "50 m school gate", disc(*at(0, 0), 25), 30)
DEPOT = square("DEPOT", 1000, 0, 100, dwell_s=120)
ROAD = Zone("ROAD", "speed_limit", "ring road", corridor([at(-3000, 0), at(3000, 0)], 40), 60)


def names(refs: tuple[ZoneRef, ...]) -> list[str]:
    return [r.id for r in refs]


def feed(
    tracker: GeofenceTracker, fixes: Sequence[tuple[float, float, float]]
) -> list[ZoneContext]:
    """``(seconds after T0, east m, north m)`` per fix."""
    return [tracker.update(T0 + timedelta(seconds=s), *at(e, n)) for s, e, n in fixes]


def straight(
    east0: float, north: float, step_m: float, n: int, dt: float = 1.0
) -> list[tuple[float, float, float]]:
    return [(i * dt, east0 + i * step_m, north) for i in range(n)]


def transitions(contexts: list[ZoneContext]) -> list[tuple[int, str, str]]:
    out = []
    for i, c in enumerate(contexts):
        out += [(i, "enter", r.id) for r in c.entered]
        out += [(i, "exit", r.id) for r in c.exited]
        out += [(i, "dwell", r.id) for r in c.dwelling]
    return out


def test_120_kmh_at_1_hz_cannot_jump_a_50_m_zone() -> None:
    index = ZoneIndex([SMALL])
    # the chord 20 m off-centre is 30 m long, shorter than the 33 m between fixes
    fixes = straight(-16.7 - 10 * MPS_120, 20, MPS_120, 20)
    assert not any(index.containing(*at(e, n)) for _, e, n in fixes)  # no fix lands inside
    contexts = feed(GeofenceTracker(index), fixes)
    assert transitions(contexts) == [(11, "enter", "SMALL"), (11, "exit", "SMALL")]
    assert all(c.inside == () for c in contexts)
    assert contexts[11].entered[0].speed_limit_kmh == 30  # the limit travels with the ref


@pytest.mark.parametrize("phase", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("north", [0.0, 12.0, 20.0, 24.0])
def test_one_enter_and_one_exit_whatever_the_fix_phase(phase: float, north: float) -> None:
    fixes = straight(-300 + phase * MPS_120, north, MPS_120, 20)
    contexts = feed(GeofenceTracker(ZoneIndex([SMALL])), fixes)
    got = transitions(contexts)
    assert [(kind, zid) for _, kind, zid in got] == [("enter", "SMALL"), ("exit", "SMALL")]
    entered_at, exited_at = got[0][0], got[1][0]
    assert 0 <= exited_at - entered_at <= 2  # 50 m at 33 m per fix


def test_skirting_near_but_outside_never_enters() -> None:
    index = ZoneIndex([SMALL, ROAD])
    contexts = feed(GeofenceTracker(index), straight(-300, 26, MPS_120, 20))  # 1 m outside
    assert transitions(contexts) == []
    # alongside the road corridor, 2 m outside its edge, with GPS wobble of ±1 m
    wobble = [
        (s, e, -22 + (1 if i % 2 else -1))
        for i, (s, e, _) in enumerate(straight(-2000, 0, 20, 100))
    ]
    assert transitions(feed(GeofenceTracker(index), wobble)) == []


def test_zone_wholly_between_two_fixes_far_apart() -> None:
    # a unit reporting every 10 s at 120 km/h: fixes 333 m apart around a 50 m zone
    fixes = straight(-500, 5, MPS_120 * 10, 4, dt=10)
    contexts = feed(GeofenceTracker(ZoneIndex([SMALL])), fixes)
    assert transitions(contexts) == [(2, "enter", "SMALL"), (2, "exit", "SMALL")]


def test_gps_lost_in_a_tunnel_still_gives_enter_and_exit() -> None:
    tunnel = Zone("TUN", "tunnel", "独墅湖隧道", corridor([at(0, -1700), at(0, 1700)], 30), 70)
    fixes = [(0, 0, 1750), (1, 0, 1720), (175, 0, -1730)]  # no fix for ~3 minutes underground
    contexts = feed(GeofenceTracker(ZoneIndex([tunnel])), fixes)
    assert transitions(contexts) == [(2, "enter", "TUN"), (2, "exit", "TUN")]


def test_long_gap_does_not_invent_a_straight_line() -> None:
    fixes = [(0, -500, 0), (1, -480, 0), (1800, 500, 0)]  # unit off for half an hour
    contexts = feed(GeofenceTracker(ZoneIndex([SMALL]), max_gap_s=300), fixes)
    assert transitions(contexts) == []
    contexts = feed(GeofenceTracker(ZoneIndex([SMALL]), max_gap_s=None), fixes)
    assert transitions(contexts) == [(2, "enter", "SMALL"), (2, "exit", "SMALL")]


def test_enter_inside_exit_and_speed_limit() -> None:
    index = ZoneIndex([SMALL, ROAD])
    contexts = feed(GeofenceTracker(index), straight(-100, 0, 10, 20))  # along the road
    assert transitions(contexts) == [(8, "enter", "SMALL"), (13, "exit", "SMALL")]
    inside = [names(c.inside) for c in contexts[7:10]]
    assert inside == [["ROAD"], ["ROAD", "SMALL"], ["ROAD", "SMALL"]]
    assert [c.speed_limit_kmh for c in contexts[6:14]] == [60, 60, 30, 30, 30, 30, 30, 60]
    assert feed(GeofenceTracker(index), [(0, 500, 500)]) == [NO_ZONES]


def test_first_fix_reports_inside_but_not_entered() -> None:
    tracker = GeofenceTracker(ZoneIndex([DEPOT, ROAD]))
    first, second = feed(tracker, [(0, 1000, 0), (1, 1005, 0)])
    assert names(first.inside) == ["DEPOT", "ROAD"] and first.entered == () == first.exited
    assert second.entered == () and names(second.inside) == ["DEPOT", "ROAD"]
    assert tracker.inside_since() == {"DEPOT": T0, "ROAD": T0}


def test_dwell_after_the_delay_once_per_visit() -> None:
    tracker = GeofenceTracker(ZoneIndex([DEPOT, SMALL]), default_dwell_s=60)
    timeline = [(0, 800, 0), (10, 950, 0)]  # enters the depot (dwell_s 120) at t=10
    timeline += [(t, 1000, 0) for t in range(20, 600, 10)]  # parked for ten minutes
    timeline += [(600, 1200, 0), (700, 1050, 0)]  # out and back in
    timeline += [(t, 1000, 0) for t in range(710, 900, 10)]
    timeline += [(900, 0, 0)]  # drives straight to the school and stops there
    timeline += [(t, 0, 5) for t in range(905, 1000, 5)]
    got = transitions(feed(tracker, timeline))
    times = [timeline[i][0] for i, _, _ in got]
    assert [(t, kind, zid) for t, (_, kind, zid) in zip(times, got, strict=True)] == [
        (10, "enter", "DEPOT"),
        (130, "dwell", "DEPOT"),  # 120 s after the first fix inside, once
        (600, "exit", "DEPOT"),
        (700, "enter", "DEPOT"),
        (820, "dwell", "DEPOT"),  # a new visit dwells again
        (900, "enter", "SMALL"),
        (900, "exit", "DEPOT"),
        (960, "dwell", "SMALL"),  # the default delay
    ]


def test_pass_through_never_dwells_and_zero_delay_dwells_at_once() -> None:
    instant = square("GATE", 0, 0, 20, dwell_s=0)
    contexts = feed(GeofenceTracker(ZoneIndex([instant])), [(0, -100, 0), (60, 100, 0), (61, 0, 0)])
    assert transitions(contexts) == [
        (1, "enter", "GATE"),
        (1, "exit", "GATE"),
        (2, "enter", "GATE"),
        (2, "dwell", "GATE"),
    ]


def test_out_of_order_fix_is_ignored() -> None:
    tracker = GeofenceTracker(ZoneIndex([SMALL, ROAD]))
    contexts = feed(tracker, [(0, -100, 0), (10, 0, 0), (5, 500, 500), (11, 5, 0), (12, 100, 0)])
    assert transitions(contexts) == [(1, "enter", "SMALL"), (4, "exit", "SMALL")]
    stale = contexts[2]
    assert names(stale.inside) == ["ROAD", "SMALL"] and stale.speed_limit_kmh == 30
    assert tracker.last_fix is not None and tracker.last_fix[0] == T0 + timedelta(seconds=12)
    # an equal timestamp is not older: it is taken
    again = feed(tracker, [(12, 0, 0)])
    assert transitions(again) == [(0, "enter", "SMALL")]


def test_replace_index_keeps_state_by_zone_id() -> None:
    tracker = GeofenceTracker(ZoneIndex([DEPOT, SMALL, ROAD]), default_dwell_s=60)
    feed(tracker, [(0, 800, 0), (10, 1000, 0), (20, 1000, 0)])
    assert tracker.inside_since() == {"DEPOT": T0 + timedelta(seconds=10), "ROAD": T0}
    # a dispatcher edits zones live: the depot gets a limit, the road is deleted, a new
    # hazmat area is drawn around the vehicle
    depot2 = square("DEPOT", 1000, 0, 100, dwell_s=120, limit=10)
    hazmat = square("HAZ", 1000, 0, 500, kind="hazmat_restricted")
    tracker.replace_index(ZoneIndex([depot2, SMALL, hazmat]))
    assert tracker.inside_since() == {"DEPOT": T0 + timedelta(seconds=10)}
    contexts = feed(tracker, [(30, 1000, 0), (130, 1000, 0), (140, 1000, 0)])
    # no re-entry into the depot, no exit from the deleted road, the new zone is entered
    assert transitions(contexts) == [
        (0, "enter", "HAZ"),
        (1, "dwell", "DEPOT"),
        (1, "dwell", "HAZ"),
    ]
    assert contexts[0].speed_limit_kmh == 10 and contexts[0].inside[0].speed_limit_kmh == 10
    # the depot shrinks away from the vehicle: exited at the next fix
    tracker.replace_index(ZoneIndex([square("DEPOT", 1500, 0, 100), SMALL, hazmat]))
    assert transitions(feed(tracker, [(150, 1000, 0)])) == [(0, "exit", "DEPOT")]


def test_steady_state_returns_the_same_context() -> None:
    tracker = GeofenceTracker(ZoneIndex([SMALL]), default_dwell_s=5)
    contexts = feed(tracker, [(t, 0, 0) for t in range(10)])
    assert transitions(contexts) == [(5, "dwell", "SMALL")]
    assert contexts[7] is contexts[8] and contexts[8].dwelling == ()
    assert names(contexts[9].inside) == ["SMALL"]
