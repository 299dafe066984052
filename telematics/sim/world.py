"""Roads around Suzhou and a vehicle's motion along them (pure, seeded).

Routes are closed loops of waypoints, each segment tagged with a road type (``city``,
``ring`` for the elevated ring roads, ``expressway`` for the G2/G42 stretches toward
Shanghai and Wuxi, ``yard`` inside a depot) and each waypoint with what a vehicle may
stop for there (a traffic light, a bus stop, a toll gate, a service area, a customer,
the depot). Coordinates are approximate WGS-84 positions of the real roads.

:class:`Motion` moves a vehicle along a route in simulated time: cruise speeds drawn
per stretch from the class's speed limit for the road type, bounded acceleration and
braking, slowing for lower limits ahead and for stops, dwelling at stops (ignition off
during long ones), heading, odometer and a little GNSS noise.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

CENTER = (31.30, 120.60)  # roughly the Gusu district of Suzhou

ROAD_TYPES = ("yard", "city", "ring", "expressway")

#: Speed limits in km/h by vehicle class and road type (expressway: 100 for coaches and
#: buses, 90 for trucks in practice, 80 for dangerous goods; 60 elsewhere for them).
SPEED_LIMITS: dict[str, dict[str, float]] = {
    "coach": {"yard": 15.0, "city": 50.0, "ring": 80.0, "expressway": 100.0},
    "bus": {"yard": 15.0, "city": 50.0, "ring": 80.0, "expressway": 100.0},
    "hazmat": {"yard": 10.0, "city": 40.0, "ring": 60.0, "expressway": 80.0},
    "freight": {"yard": 15.0, "city": 50.0, "ring": 70.0, "expressway": 90.0},
}

#: Cruise speed as a fraction of the limit (drawn per stretch): congested city streets
#: run at 45–100 % of 50 km/h, i.e. 20–50 km/h; expressways at 80–100 %.
CRUISE_FRACTION: dict[str, tuple[float, float]] = {
    "yard": (0.5, 0.9),
    "city": (0.45, 1.0),
    "ring": (0.7, 1.0),
    "expressway": (0.8, 1.0),
}

#: Comfortable acceleration in m/s² by class (loaded trucks are sluggish).
ACCEL_MPS2: dict[str, float] = {"coach": 0.9, "bus": 1.0, "hazmat": 0.6, "freight": 0.7}
DECEL_MPS2 = 1.3
_PLAN_DECEL = DECEL_MPS2 * 0.7  # braking is planned gently; the rest absorbs 1 s steps

#: What a vehicle may stop for at a waypoint: (probability, min dwell s, max dwell s).
STOPS: dict[str, tuple[float, float, float]] = {
    "light": (0.45, 10.0, 60.0),
    "bus": (0.85, 15.0, 45.0),
    "toll": (1.0, 3.0, 12.0),
    "service": (0.5, 600.0, 1200.0),
    "customer": (1.0, 900.0, 1800.0),
    "depot": (1.0, 300.0, 900.0),
}
#: Dwells longer than this switch the ignition off after IGNITION_OFF_AFTER_S.
LONG_DWELL_S = 180.0
IGNITION_OFF_AFTER_S = 60.0

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQ = 111_320.0

# A waypoint: (lat, lon, road type of the segment to the next waypoint, stop kind or "").
Waypoint = tuple[float, float, str, str]


@dataclass(frozen=True, slots=True)
class Segment:
    lat0: float
    lon0: float
    dlat: float
    dlon: float
    length_m: float
    heading_deg: float
    road: str
    stop: str  # what the vehicle may stop for at the segment's end ("" = nothing)


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    segments: tuple[Segment, ...]

    @property
    def length_m(self) -> float:
        return sum(s.length_m for s in self.segments)


def _segments(points: list[Waypoint]) -> tuple[Segment, ...]:
    out = []
    n = len(points)
    for i, (lat, lon, road, _) in enumerate(points):
        lat1, lon1, _, stop1 = points[(i + 1) % n]
        dlat, dlon = lat1 - lat, lon1 - lon
        north = dlat * _M_PER_DEG_LAT
        east = dlon * _M_PER_DEG_LON_EQ * math.cos(math.radians((lat + lat1) / 2))
        length = math.hypot(north, east)
        if length < 1.0:
            continue
        heading = math.degrees(math.atan2(east, north)) % 360.0
        out.append(Segment(lat, lon, dlat, dlon, length, heading, road, stop1))
    return tuple(out)


def _out_and_back(path: list[Waypoint]) -> list[Waypoint]:
    """A closed loop that drives ``path`` and returns the same way.

    ``path[i][2]`` is the road between points i and i+1; the way back uses the same
    road types. The first point's stop applies on return, the last point's on arrival.
    """
    back: list[Waypoint] = []
    for i in range(len(path) - 2, 0, -1):
        lat, lon, _, stop = path[i]
        back.append((lat, lon, path[i - 1][2], stop))
    last = path[-1]
    return [*path[:-1], (last[0], last[1], path[-2][2], last[3]), *back]


# -- the road network ------------------------------------------------------------------

# Depots: a city bus depot in the west (Shilu), a coach depot by the north ring and a
# logistics yard in Xiangcheng near the G2/G42 junction.
BUS_DEPOT = (31.2990, 120.5853)
COACH_DEPOT = (31.3560, 120.6150)
FREIGHT_YARD = (31.3900, 120.6000)

_INNER_RING: list[tuple[float, float]] = [
    (31.3330, 120.5960), (31.3345, 120.6220), (31.3330, 120.6500), (31.3100, 120.6560),
    (31.2880, 120.6500), (31.2850, 120.6200), (31.2880, 120.5960), (31.3100, 120.5900),
]  # fmt: skip
_MIDDLE_RING: list[tuple[float, float]] = [
    (31.3700, 120.6200), (31.3650, 120.6900), (31.3150, 120.7150), (31.2600, 120.6900),
    (31.2450, 120.6200), (31.2600, 120.5550), (31.3100, 120.5400), (31.3600, 120.5550),
]  # fmt: skip


def _ring(start: tuple[float, float], ring: list[tuple[float, float]]) -> list[Waypoint]:
    """Depot → onto the ring → once around → back to the depot."""
    pts: list[Waypoint] = [(start[0], start[1], "yard", "depot")]
    pts.append((start[0] + 0.0008, start[1] + 0.0005, "city", ""))
    pts += [(lat, lon, "ring", "") for lat, lon in ring]
    lat0, lon0 = ring[0]
    pts.append((lat0, lon0, "city", ""))  # off the ring at the entry ramp
    pts.append(((lat0 + start[0]) / 2, (lon0 + start[1]) / 2, "city", "light"))
    return pts


# City bus line through the old town (Shilu → Ganjiang Rd → Renmin Rd → Guanqian St).
_OLD_TOWN: list[Waypoint] = [
    (*BUS_DEPOT, "yard", "depot"), (31.3000, 120.5880, "city", ""),
    (31.3060, 120.5970, "city", "light"), (31.3062, 120.6050, "city", "bus"),
    (31.3064, 120.6120, "city", "light"), (31.3066, 120.6190, "city", "bus"),
    (31.3180, 120.6192, "city", "light"), (31.3300, 120.6195, "city", "bus"),
    (31.3305, 120.6300, "city", "light"), (31.3200, 120.6330, "city", "bus"),
    (31.3105, 120.6265, "city", "bus"), (31.3068, 120.6350, "city", "light"),
    (31.3070, 120.6450, "city", "bus"), (31.2980, 120.6440, "city", "light"),
    (31.2920, 120.6300, "city", "bus"), (31.2922, 120.6190, "city", "light"),
    (31.2950, 120.6050, "city", "bus"), (31.2970, 120.5950, "city", "light"),
]  # fmt: skip
# Shuttle from the old town east along Ganjiang Rd into the Industrial Park (out and back).
_SIP_SHUTTLE: list[Waypoint] = [
    (*BUS_DEPOT, "yard", "depot"), (31.3000, 120.5880, "city", ""),
    (31.3060, 120.5970, "city", "light"), (31.3066, 120.6190, "city", "light"),
    (31.3070, 120.6450, "city", "light"), (31.3100, 120.6560, "ring", ""),
    (31.3150, 120.6750, "city", "light"), (31.3200, 120.6950, "city", "bus"),
    (31.3180, 120.7100, "city", "light"), (31.3130, 120.7250, "city", "light"),
    (31.3050, 120.7350, "city", "bus"),
]  # fmt: skip
# G42 (Shanghai–Chengdu, the old Huning expressway) west toward Wuxi (out and back).
_G42_WUXI: list[Waypoint] = [
    (*COACH_DEPOT, "yard", "depot"), (31.3570, 120.6170, "city", ""),
    (31.3700, 120.6200, "city", "light"), (31.3760, 120.6250, "expressway", "toll"),
    (31.3800, 120.5800, "expressway", ""), (31.3850, 120.5400, "expressway", ""),
    (31.4050, 120.5100, "expressway", ""), (31.4300, 120.4900, "expressway", ""),
    (31.4650, 120.4450, "expressway", ""), (31.4900, 120.4050, "city", "toll"),
    (31.4950, 120.3950, "city", "service"),
]  # fmt: skip
# G2 (Beijing–Shanghai) east past the Industrial Park and Kunshan toward Shanghai.
_G2_KUNSHAN: list[Waypoint] = [
    (*FREIGHT_YARD, "yard", "depot"), (31.3905, 120.6030, "city", ""),
    (31.3780, 120.6260, "expressway", "toll"), (31.3700, 120.6700, "expressway", ""),
    (31.3680, 120.7200, "expressway", ""), (31.3760, 120.7800, "expressway", ""),
    (31.3850, 120.8600, "expressway", ""), (31.3880, 120.9300, "expressway", ""),
    (31.3700, 121.0000, "expressway", ""), (31.3580, 121.0550, "city", "toll"),
    (31.3550, 121.0620, "city", "customer"),
]  # fmt: skip

ROUTES: dict[str, Route] = {
    "city-old-town": Route("city-old-town", _segments(_OLD_TOWN)),
    "sip-shuttle": Route("sip-shuttle", _segments(_out_and_back(_SIP_SHUTTLE))),
    "inner-ring": Route("inner-ring", _segments(_ring(COACH_DEPOT, _INNER_RING))),
    "middle-ring": Route("middle-ring", _segments(_ring(FREIGHT_YARD, _MIDDLE_RING))),
    "g42-wuxi": Route("g42-wuxi", _segments(_out_and_back(_G42_WUXI))),
    "g2-kunshan": Route("g2-kunshan", _segments(_out_and_back(_G2_KUNSHAN))),
}

#: Which routes a class drives, with weights.
CLASS_ROUTES: dict[str, tuple[tuple[str, float], ...]] = {
    "coach": (("g42-wuxi", 0.35), ("g2-kunshan", 0.3), ("inner-ring", 0.2), ("sip-shuttle", 0.15)),
    "bus": (("city-old-town", 0.5), ("sip-shuttle", 0.3), ("inner-ring", 0.2)),
    "hazmat": (("g42-wuxi", 0.45), ("g2-kunshan", 0.35), ("middle-ring", 0.2)),
    "freight": (("g42-wuxi", 0.35), ("g2-kunshan", 0.4), ("middle-ring", 0.25)),
}


def pick_route(vehicle_class: str, rng: random.Random) -> Route:
    choices = CLASS_ROUTES.get(vehicle_class, CLASS_ROUTES["coach"])
    names = [name for name, _ in choices]
    weights = [w for _, w in choices]
    return ROUTES[rng.choices(names, weights)[0]]


def distance_km(lat0: float, lon0: float, lat1: float, lon1: float) -> float:
    """Approximate ground distance (equirectangular; fine at city scale)."""
    north = (lat1 - lat0) * _M_PER_DEG_LAT
    east = (lon1 - lon0) * _M_PER_DEG_LON_EQ * math.cos(math.radians((lat0 + lat1) / 2))
    return math.hypot(north, east) / 1000.0


class Motion:
    """A vehicle moving along a route in simulated time; call :meth:`step` with ``dt``."""

    __slots__ = (
        "_accel",
        "_cruise_left_s",
        "_cruise_mps",
        "_dwell_elapsed",
        "_dwell_left",
        "_limits",
        "_next_limit_mps",
        "_pos_m",
        "_rng",
        "_seg",
        "_seg_i",
        "_speed_factor",
        "_stop_here",
        "arrived_depot",
        "heading_deg",
        "ignition",
        "lat",
        "lon",
        "odometer_km",
        "route",
        "speed_kmh",
    )

    def __init__(
        self,
        route: Route,
        vehicle_class: str,
        rng: random.Random,
        *,
        speed_factor: float = 1.0,
        odometer_km: float | None = None,
        start_anywhere: bool = True,
    ) -> None:
        self.route = route
        self._rng = rng
        self._limits = SPEED_LIMITS.get(vehicle_class, SPEED_LIMITS["coach"])
        self._accel = ACCEL_MPS2.get(vehicle_class, 0.8)
        self._speed_factor = speed_factor
        self.odometer_km = (
            odometer_km if odometer_km is not None else round(rng.uniform(20_000, 600_000), 1)
        )
        segs = route.segments
        self._seg_i = rng.randrange(len(segs)) if start_anywhere else 0
        self._seg = segs[self._seg_i]
        self._pos_m = rng.uniform(0.0, self._seg.length_m) if start_anywhere else 0.0
        self._cruise_mps = 0.0
        self._cruise_left_s = 0.0
        self._new_cruise()
        self._stop_here = self._decide_stop(self._seg)
        self._next_limit_mps = self._next_limit()
        self._dwell_left = 0.0
        self._dwell_elapsed = 0.0
        self.arrived_depot = False  # set for one step when a depot dwell begins
        self.ignition = True
        moving = start_anywhere and self._seg.road != "yard"
        self.speed_kmh = self._cruise_mps * 3.6 if moving else 0.0
        self.heading_deg = self._seg.heading_deg
        self.lat = self._seg.lat0
        self.lon = self._seg.lon0
        self._place()

    @property
    def road(self) -> str:
        return self._seg.road

    @property
    def limit_kmh(self) -> float:
        return self._limits[self._seg.road]

    @property
    def dwelling(self) -> bool:
        return self._dwell_left > 0.0

    def _new_cruise(self) -> None:
        road = self._seg.road
        lo, hi = CRUISE_FRACTION[road]
        frac = self._rng.uniform(lo, hi)
        self._cruise_mps = self._limits[road] * frac * self._speed_factor / 3.6
        self._cruise_left_s = self._rng.uniform(20.0, 120.0)

    def _decide_stop(self, seg: Segment) -> float:
        """Dwell seconds planned at the end of ``seg`` (0 = drive through)."""
        if not seg.stop:
            return 0.0
        p, lo, hi = STOPS[seg.stop]
        if self._rng.random() >= p:
            return 0.0
        return self._rng.uniform(lo, hi)

    def _place(self) -> None:
        seg = self._seg
        f = self._pos_m / seg.length_m
        rnd = self._rng.random
        # ~1.5 m of GNSS noise
        self.lat = seg.lat0 + seg.dlat * f + (rnd() - 0.5) * 2.7e-5
        self.lon = seg.lon0 + seg.dlon * f + (rnd() - 0.5) * 3.2e-5

    def step(self, dt: float) -> None:
        """Advance ``dt`` simulated seconds."""
        self.arrived_depot = False
        if self._dwell_left > 0.0:
            self._dwell_left -= dt
            self._dwell_elapsed += dt
            self.speed_kmh = 0.0
            if self._dwell_left + self._dwell_elapsed > LONG_DWELL_S:
                self.ignition = (
                    self._dwell_elapsed < IGNITION_OFF_AFTER_S
                    or self._dwell_left < IGNITION_OFF_AFTER_S / 2
                )
            if self._dwell_left <= 0.0:
                self._dwell_left = 0.0
                self.ignition = True
                self._next_segment()
            self._place()
            return

        seg = self._seg
        self._cruise_left_s -= dt
        if self._cruise_left_s <= 0.0:
            self._new_cruise()
        v = self.speed_kmh / 3.6
        target = self._cruise_mps
        # plan one step ahead so the speed is right when the step crosses the boundary
        remaining = max(0.0, seg.length_m - self._pos_m - v * dt)
        if self._stop_here > 0.0:
            # brake to arrive at the stop line; creep the last metres
            brake = 2.0 * _PLAN_DECEL * remaining
            if brake < target * target:
                target = max(math.sqrt(brake), 1.5)
        elif self._next_limit_mps < target:
            nxt = self._next_limit_mps
            brake = nxt * nxt + 2.0 * _PLAN_DECEL * remaining
            if brake < target * target:
                target = math.sqrt(brake)
        if v < target:
            v = min(target, v + self._accel * dt)
        else:
            v = max(target, v - DECEL_MPS2 * dt)
        move = v * dt
        self.odometer_km += move / 1000.0
        self._pos_m += move
        if self._pos_m >= seg.length_m:
            if self._stop_here > 0.0:
                self._pos_m = seg.length_m
                self._dwell_left = self._stop_here
                self._dwell_elapsed = 0.0
                self.arrived_depot = seg.stop == "depot"
                v = 0.0
            else:
                over = self._pos_m - seg.length_m
                self._next_segment()
                self._pos_m = min(over, self._seg.length_m)
        self.speed_kmh = v * 3.6
        rnd = self._rng.random
        heading = self._seg.heading_deg + (rnd() - 0.5) * 3.0
        self.heading_deg = heading % 360.0
        seg = self._seg
        f = self._pos_m / seg.length_m
        self.lat = seg.lat0 + seg.dlat * f + (rnd() - 0.5) * 2.7e-5
        self.lon = seg.lon0 + seg.dlon * f + (rnd() - 0.5) * 3.2e-5

    def _next_segment(self) -> None:
        segs = self.route.segments
        self._seg_i = (self._seg_i + 1) % len(segs)
        self._seg = segs[self._seg_i]
        self._pos_m = 0.0
        self._stop_here = self._decide_stop(self._seg)
        self._next_limit_mps = self._next_limit()
        self._new_cruise()

    def _next_limit(self) -> float:
        """Speed (m/s) to be down to when entering the next segment."""
        segs = self.route.segments
        nxt = segs[(self._seg_i + 1) % len(segs)]
        return self._limits[nxt.road] * 0.95 / 3.6
