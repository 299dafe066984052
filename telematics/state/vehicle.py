"""Per-vehicle streaming state: fed one item at a time, it derives and grades alarms.

Pure: no I/O, no clock of its own; time is the items' ``ts``. One instance per vehicle,
fed that vehicle's items in seq order (offline replays arrive in order, just late).
A telemetry fix older than the newest one seen is kept out of the speed, driving and
overspeed state (it would run their clocks backwards); tires judge their own order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from telematics.classify.alarms import AlarmCandidate
from telematics.classify.context import Graded, Grader, GradingInput, RulesGrader
from telematics.classify.risk_policy import RiskPolicy
from telematics.classify.rules import event_key
from telematics.fleet import Vehicle
from telematics.geo.context import NO_ZONES, ZoneContext, ZoneRef
from telematics.protocol.messages import DeviceEvent, Telemetry
from telematics.state.counts import RecentCounts
from telematics.state.driving import NIGHT, DrivingClock, LocalTime
from telematics.state.dynamics import Fix, HarshDetector, OverspeedDetector
from telematics.state.series import FloatRows
from telematics.state.tires import TireMonitor

LOADS = frozenset({"empty", "half", "full"})
DRIVING_TIME, HAZMAT_ZONE = "driving_time", "hazmat_restricted_zone"
_HISTORY_MAX_POINTS = 4096  # bound even for a unit reporting far faster than 1 Hz


@dataclass(frozen=True, slots=True)
class _Detection:
    """A derived condition before grading."""

    kind: str
    key: str
    level: int | None
    detail: str
    tire_pos: str | None = None
    base: str | None = None  # the detector's own severity, if it has one
    rise: bool = False  # severity/level rose within an episode: not a new occurrence


@dataclass(frozen=True, slots=True)
class Detected:
    """An alarm found by the state, with the snapshot to grade it by.

    Detection and grading are two steps so that a server can grade the detections of
    many vehicles in one batch (one model call), then finish each vehicle's frame.
    """

    input: GradingInput
    vehicle_id: str
    kind: str
    key: str
    seq: int
    ts: datetime
    derived: bool
    level: int | None
    tire_pos: str | None
    lat: float
    lon: float
    speed_kmh: float

    def graded(self, g: Graded) -> AlarmCandidate:
        return AlarmCandidate(
            vehicle_id=self.vehicle_id,
            kind=self.kind,
            key=self.key,
            severity=g.severity,
            reason=g.reason,
            seq=self.seq,
            ts=self.ts,
            derived=self.derived,
            level=self.level,
            tire_pos=self.tire_pos,
            lat=self.lat,
            lon=self.lon,
            speed_kmh=self.speed_kmh,
            probability=g.probability,
            model_version=g.model_version,
            factors=g.factors,
        )


class VehicleState:
    """Everything the risk engine knows about one vehicle, and its derived alarms."""

    def __init__(self, vehicle: Vehicle, policy: RiskPolicy, grader: Grader | None = None) -> None:
        self.vehicle = vehicle
        self.policy = policy
        self.grader: Grader = grader or RulesGrader(policy)
        cls = vehicle.vehicle_class
        self.tires = TireMonitor(
            vehicle,
            policy.tire_rules(),
            imbalance_ratio=policy.tires.imbalance_ratio,
            imbalance_max_skew_s=policy.tires.imbalance_max_skew_s,
        )
        self._fast_leak_severe_kmh = policy.tire_rules().fast_leak_severe_speed_kmh
        self._local = LocalTime(policy.driving)
        night_limited = cls in policy.driving.night_limit_classes
        self._driving = DrivingClock(policy.driving, night_limited, self._local)
        self._harsh = HarshDetector(policy.dynamics, cls)
        self._overspeed = OverspeedDetector(policy.overspeed, cls)
        rp = policy.recurrence
        self._counts = RecentCounts(rp.retention_s, rp.merge_s, rp.max_per_kind)
        self._history = FloatRows(4, _HISTORY_MAX_POINTS)  # t, lat, lon, speed_kmh
        self._last: Telemetry | None = None
        self._zones: ZoneContext = NO_ZONES
        self._load = "unknown"
        # The current driver's history on this vehicle (a model feature): their alarms,
        # and the driving clock's total when they took over.
        self._driver: str | None = None
        self._driver_alarms = 0
        self._driver_from_s = 0.0

    # ---- read-only view, for the grader and (later) a model's feature function ----

    @property
    def vehicle_class(self) -> str:
        return self.vehicle.vehicle_class

    @property
    def speed_kmh(self) -> float:
        return self._last.speed_kmh if self._last is not None else 0.0

    @property
    def position(self) -> tuple[float, float] | None:
        return (self._last.lat, self._last.lon) if self._last is not None else None

    @property
    def last_ts(self) -> datetime | None:
        return self._last.ts if self._last is not None else None

    @property
    def history(self) -> Sequence[Fix]:
        """Fixes of the last ``policy.driving.history_s``, oldest first."""
        return tuple(Fix(*point) for point in self._history)

    @property
    def continuous_driving_s(self) -> float:
        return self._driving.continuous_s

    @property
    def night_driving_s(self) -> float:
        """Driving at night within the current stint (the coaches' 2 h rule)."""
        return self._driving.night_continuous_s

    @property
    def driving_today_s(self) -> float:
        return self._driving.today_s

    @property
    def stopped_s(self) -> float:
        return self._driving.stopped_s

    @property
    def load(self) -> str:
        return self._load

    @property
    def zones_inside(self) -> tuple[ZoneRef, ...]:
        return self._zones.inside

    @property
    def zone_kinds(self) -> frozenset[str]:
        return frozenset(z.kind for z in self._zones.inside)

    @property
    def speed_limit_kmh(self) -> float:
        """The limit in force: the zone's, else the class's road default."""
        return self._limit(self._zones)

    def _limit(self, zones: ZoneContext) -> float:
        limit = zones.speed_limit_kmh
        return self._overspeed.road_limit_kmh if limit is None else limit

    @property
    def ended_conditions(self) -> list[str]:
        """Alarm keys of the tire conditions the last fix with tire readings found over."""
        return self.tires.ended

    def restore_condition(self, kind: str, tire_pos: str, severity: str) -> None:
        """Carry on a tire condition whose alarm is still open (after a restart)."""
        self.tires.restore(kind, tire_pos, severity)

    def is_night(self, ts: datetime) -> bool:
        return self._local.is_night(ts)

    def recent_count(self, kind: str, window_s: float, now: datetime) -> int:
        """Occurrences of ``kind`` (device or derived) with ``now - window_s < ts <= now``."""
        return self._counts.count(kind, window_s, now.timestamp())

    def grading_input(
        self,
        kind: str,
        level: int | None,
        ts: datetime,
        speed_kmh: float,
        *,
        base: str | None = None,
        detail: str | None = None,
        derived: bool = False,
        zones: ZoneContext | None = None,
    ) -> GradingInput:
        """The snapshot a grader sees. Driving time and load are the state's current ones,
        also for a replayed older item; night, recurrence and speed are the item's own."""
        z = self._zones if zones is None else zones
        return GradingInput(
            kind=kind,
            level=level,
            ts=ts,
            speed_kmh=speed_kmh,
            speed_limit_kmh=self._limit(z),
            vehicle_class=self.vehicle.vehicle_class,
            load=self._load,
            night=self._local.is_night(ts),
            zone_kinds=frozenset(zone.kind for zone in z.inside),
            recurrence=self.recent_count(kind, self.policy.recurrence.window_s, ts),
            continuous_driving_s=self._driving.continuous_s,
            driving_today_s=self._driving.today_s,
            derived=derived,
            base=base,
            detail=detail,
            recent_alarms=self._counts.count_all(self.policy.recurrence.window_s, ts.timestamp()),
            tire_conditions=self.tires.active_count(),
            driver_alarms=self._driver_alarms,
            driver_hours=(self._driving.total_s - self._driver_from_s) / 3600.0,
        )

    # ---- feeding ----

    def observe_event(self, e: DeviceEvent, zones: ZoneContext | None = None) -> AlarmCandidate:
        """Grade one device event; ``zones`` defaults to those of the latest fix."""
        return self.grade([self.detect_event(e, zones)])[0]

    def detect_event(self, e: DeviceEvent, zones: ZoneContext | None = None) -> Detected:
        """Record one device event; the alarm it raises, not yet graded."""
        if self._counts.record(e.kind, e.ts.timestamp()):
            self._driver_alarms += 1
        base = None
        if e.kind == "tire_fast_leak" and e.speed_kmh >= self._fast_leak_severe_kmh:
            base = "severe"  # a tire deflating fast at speed is a blow-out: as when we detect it
        key, pos = event_key(e)
        return Detected(
            self.grading_input(e.kind, e.level, e.ts, e.speed_kmh, zones=zones, base=base),
            self.vehicle.id,
            e.kind,
            key,
            e.seq,
            e.ts,
            False,
            e.level,
            pos,
            e.lat,
            e.lon,
            e.speed_kmh,
        )

    def grade(self, found: Sequence[Detected]) -> list[AlarmCandidate]:
        """Grade detections with this state's own grader (one ``grade_many`` call)."""
        if not found:
            return []
        graded = self.grader.grade_many([d.input for d in found])
        return [d.graded(g) for d, g in zip(found, graded, strict=True)]

    def observe_telemetry(
        self, t: Telemetry, zones: ZoneContext = NO_ZONES
    ) -> list[AlarmCandidate]:
        """Update the state with one fix; the derived alarms it raised, graded."""
        return self.grade(self.detect_telemetry(t, zones))

    def detect_telemetry(self, t: Telemetry, zones: ZoneContext = NO_ZONES) -> list[Detected]:
        """Update the state with one fix; the derived alarms it raised, not yet graded."""
        found: list[_Detection] = self._tire_detections(t) if t.tires else []
        if self._last is not None and t.ts <= self._last.ts:
            return self._detected(found, t, zones)  # out of order: tires only
        self._last = t
        self._zones = zones
        if t.driver_id != self._driver:  # a new driver's history starts from nothing
            self._driver = t.driver_id
            self._driver_alarms = 0
            self._driver_from_s = self._driving.total_s
        load = (t.extra or {}).get("load")
        if load in LOADS:
            self._load = load
        ts = t.ts.timestamp()
        p = self.policy
        fix = Fix(ts, t.lat, t.lon, t.speed_kmh)
        self._remember(ts, t.lat, t.lon, t.speed_kmh)
        moving = t.speed_kmh > p.driving.moving_kmh and t.ignition is not False
        limit = self._driving.update(t.ts, ts, moving)
        if t.speed_kmh <= p.dynamics.max_plausible_kmh:  # else a glitch: no dynamics from it
            for h in self._harsh.update(fix):
                found.append(_Detection(h.kind, h.kind, h.level, h.detail(), rise=h.rise))
            o = self._overspeed.update(ts, t.speed_kmh, zones.speed_limit_kmh)
            if o is not None:
                found.append(_Detection("overspeed", "overspeed", o.level, o.detail(), rise=o.rise))
        if limit is not None:
            found.append(self._driving_time(limit))
        if self.vehicle.vehicle_class == "hazmat":
            for zone in zones.entered:
                if zone.kind == "hazmat_restricted":
                    detail = f"entered hazmat-restricted zone {zone.name}"
                    found.append(_Detection(HAZMAT_ZONE, f"{HAZMAT_ZONE}:{zone.id}", None, detail))
        return self._detected(found, t, zones)

    # ---- internals ----

    def _remember(self, t: float, lat: float, lon: float, speed_kmh: float) -> None:
        h = self._history
        h.append(t, lat, lon, speed_kmh)
        h.drop_before(t - self.policy.driving.history_s)

    def _tire_detections(self, t: Telemetry) -> list[_Detection]:
        before = self.tires.active()  # imbalance has one severity: it never rises
        out: list[_Detection] = []
        for c in self.tires.update(t):
            rise = c.kind in before.get(c.tire_pos or "", ())
            out.append(_Detection(c.kind, c.key, None, c.reason, c.tire_pos, c.severity, rise))
        return out

    def _driving_time(self, which: str) -> _Detection:
        d = self.policy.driving
        rest_min = d.rest_s / 60
        if which == NIGHT:
            hours = self._driving.night_continuous_s / 3600
            detail = f"{hours:.1f} h night driving without a {rest_min:.0f}-min break"
        else:
            hours = self._driving.continuous_s / 3600
            detail = f"{hours:.1f} h driving without a {rest_min:.0f}-min break"
        return _Detection(DRIVING_TIME, DRIVING_TIME, None, detail)

    def _detected(
        self, found: list[_Detection], t: Telemetry, zones: ZoneContext
    ) -> list[Detected]:
        if not found:
            return []
        ts = t.ts.timestamp()
        for d in found:
            if not d.rise and self._counts.record(d.kind, ts):
                self._driver_alarms += 1
        return [
            Detected(
                self.grading_input(
                    d.kind,
                    d.level,
                    t.ts,
                    t.speed_kmh,
                    base=d.base,
                    detail=d.detail,
                    derived=True,
                    zones=zones,
                ),
                self.vehicle.id,
                d.kind,
                d.key,
                t.seq,
                t.ts,
                True,
                d.level,
                d.tire_pos,
                t.lat,
                t.lon,
                t.speed_kmh,
            )
            for d in found
        ]
