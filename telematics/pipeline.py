"""Per-vehicle processing, sans I/O: state → classify → intervene, producing a StorePlan.

One :class:`VehicleProcessor` lives per connected vehicle. It is fed the items of each
frame in seq order and returns everything the writer must commit in one transaction;
the connection sends the plan's interventions to the cab at once, and the ack only after
that commit.

Per item, all in memory: the geofence tracker turns each fix into zone transitions, the
vehicle's streaming state (``state/vehicle.py``) derives and grades alarms from fixes and
device events, and the alarm lifecycle (``intervene/lifecycle.py``) decides whether an
alarm opens, repeats or rises; the interventions policy (``intervene/escalation.py``)
says what that triggers: a cab alert, a dispatcher task, an insurer notice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from telematics.classify.alarms import AlarmCandidate
from telematics.classify.context import Graded, GradingInput
from telematics.classify.risk_policy import RiskPolicy
from telematics.errors import UsageError
from telematics.fleet import Vehicle
from telematics.geo.context import NO_ZONES, ZoneContext
from telematics.geo.index import ZoneIndex
from telematics.geo.tracker import GeofenceTracker
from telematics.ids import new_id
from telematics.intervene.escalation import (
    CabAlert,
    InterventionPolicy,
    LifecycleWrites,
    actions_for,
)
from telematics.intervene.escalation import load_policy as load_escalation_policy
from telematics.intervene.lifecycle import AlarmState, condition_ended, occur, open_alarm
from telematics.protocol.messages import (
    DataItem,
    DeviceEvent,
    InterventionAck,
    Rejection,
    Telemetry,
)
from telematics.state.tires import CONDITION_KINDS
from telematics.state.vehicle import Detected, VehicleState

#: An alarm raised by an item older than this (offline replay) gets no in-cab intervention.
DEFAULT_STALE_AFTER = timedelta(minutes=2)

_INTERVENTION_NS = uuid.UUID("5b0c52d6-4f0e-4d6b-9a57-2f1f3c0e8a11")


def intervention_id(vehicle_id: str, cause_seq: int, key: str, severity: str, action: str) -> str:
    """The same cause always gives the same id.

    Interventions go to the cab before their alarm commits (they are urgent); if the
    server dies before the commit, the unit replays the item and the new server issues the
    very same intervention, which the unit already knows by its id (it dedups resends).
    """
    return uuid.uuid5(
        _INTERVENTION_NS, f"{vehicle_id}\x1f{cause_seq}\x1f{key}\x1f{severity}\x1f{action}"
    ).hex


@dataclass(slots=True)
class Intervention:
    id: str
    alarm_id: str
    vehicle_id: str
    severity: str
    action: str
    message: str
    cause_seq: int
    cause_kind: str
    issued_at: datetime

    def frame(self) -> dict[str, Any]:
        return {
            "type": "intervention",
            "id": self.id,
            "severity": self.severity,
            "action": self.action,
            "message": self.message,
            "cause": {"seq": self.cause_seq, "kind": self.cause_kind},
            "issued_at": iso_ms(self.issued_at),
        }

    def row(self) -> dict[str, Any]:
        """Its ``interventions`` row (the store adds the status, 'issued')."""
        return {
            "id": self.id,
            "alarm_id": self.alarm_id,
            "vehicle_id": self.vehicle_id,
            "severity": self.severity,
            "action": self.action,
            "message": self.message,
            "cause_seq": self.cause_seq,
            "cause_kind": self.cause_kind,
            "issued_at": self.issued_at,
        }


@dataclass(slots=True)
class AlarmRepeat:
    alarm_id: str
    last_seq: int
    last_ts: datetime
    occurrences: int
    severity: str
    reason: str
    # the grade of this occurrence (stored with the severity when it rises)
    probability: float | None = None
    model_version: str | None = None
    factors: tuple[str, ...] = ()


@dataclass(slots=True, init=False)
class StorePlan:
    """Everything one frame produced for one vehicle, committed atomically."""

    vehicle_id: str
    telemetry: list[tuple[Any, ...]]
    tires: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    rejected: list[tuple[Any, ...]]
    alarms: list[tuple[Any, ...]]
    repeats: dict[str, AlarmRepeat]
    interventions: list[Intervention]
    device_statuses: list[tuple[str, str, datetime]]
    # (vehicle_id, zone_id, transition, ts, seq, lat, lon): enter / exit / dwell
    zone_transitions: list[tuple[Any, ...]]
    # audit rows, dispatcher tasks, upgrades, clears and insurer notices of the alarms
    lifecycle: LifecycleWrites
    min_seq: int  # lowest and highest seq consumed (stored or rejected) by this plan
    max_seq: int
    severities: list[str]  # of new alarms, for live stats
    # Set by the writer when another connection had stored this plan's items first: the
    # alarms it opened that were dropped (id → key), and the vehicle's active alarms as
    # that commit left them (see VehicleProcessor.adopt).
    dropped_alarms: dict[str, str] | None
    stored_alarms: list[AlarmState] | None

    def __init__(
        self,
        vehicle_id: str,
        *,
        telemetry: list[tuple[Any, ...]] | None = None,
        min_seq: int = 0,
        max_seq: int = 0,
    ) -> None:
        # Written out, not generated: one plan is built per frame, and the generated
        # __init__'s default_factory call per list made it twice as dear.
        self.vehicle_id = vehicle_id
        self.telemetry = [] if telemetry is None else telemetry
        self.tires = []
        self.events = []
        self.rejected = []
        self.alarms = []
        self.repeats = {}
        self.interventions = []
        self.device_statuses = []
        self.zone_transitions = []
        self.lifecycle = LifecycleWrites()
        self.min_seq = min_seq
        self.max_seq = max_seq
        self.severities = []
        self.dropped_alarms = None
        self.stored_alarms = None

    @property
    def size(self) -> int:
        return len(self.telemetry) + len(self.events) + len(self.rejected) + 1


def iso_ms(ts: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as the protocol's examples write it."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class EndedConditions:
    """Tire conditions a fix found over (their alarms clear, in item order)."""

    keys: tuple[str, ...]
    ts: datetime


@dataclass(slots=True)
class Observed:
    """One frame after step 1 (:meth:`VehicleProcessor.observe`): rows, and the alarms
    found, waiting for their grades, in item order among the ended tire conditions."""

    plan: StorePlan
    steps: list[Detected | EndedConditions]

    @property
    def inputs(self) -> list[GradingInput]:
        return [s.input for s in self.steps if type(s) is Detected]


class ZoneSource:
    """The worker's current zone index, shared by all its processors.

    The hub swaps ``index`` when zones are edited; each processor hands the new index to
    its tracker at its next frame (``GeofenceTracker.replace_index`` keeps visits by id).
    """

    __slots__ = ("index",)

    def __init__(self, index: ZoneIndex | None = None) -> None:
        self.index = index if index is not None else ZoneIndex()


class VehicleProcessor:
    """Per-vehicle streaming state, geofences, grading and alarm lifecycle; pure, fed in
    seq order."""

    def __init__(
        self,
        vehicle: Vehicle,
        policy: RiskPolicy,
        escalation: InterventionPolicy | None = None,
        zones: ZoneSource | None = None,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        new_id: Callable[[], str] = new_id,
    ) -> None:
        self.vehicle = vehicle
        self.policy = policy
        self.escalation = escalation if escalation is not None else load_escalation_policy()
        self.zones = zones if zones is not None else ZoneSource()
        self.stale_after = stale_after
        self.state = VehicleState(vehicle, policy)
        self.tracker = GeofenceTracker(self.zones.index)
        #: Behaviour key → its latest alarm (active, or cleared and not yet forgotten).
        self.alarms: dict[str, AlarmState] = {}
        #: Highest seq observed (or the cursor it was restored at): newer stored items mean
        #: another processor had the vehicle meanwhile and this one is out of date.
        self.seen_seq = 0
        self._new_id = new_id

    def restore(self, alarms: Iterable[AlarmState]) -> None:
        """Re-seed the vehicle's open alarms (from the store, for a new processor): the
        next occurrence extends them, and a tire condition still open goes on."""
        for alarm in alarms:
            if not alarm.active:
                continue
            self.alarms[alarm.key] = alarm
            if alarm.derived and alarm.tire_pos and alarm.kind in CONDITION_KINDS:
                self.state.restore_condition(alarm.kind, alarm.tire_pos, alarm.severity)

    def forget(self, key: str, alarm_id: str) -> bool:
        """Drop an alarm that was cleared elsewhere (a dispatcher, the auto-clear timer):
        the next occurrence of its behaviour opens a new alarm. False if not ours."""
        alarm = self.alarms.get(key)
        if alarm is None or alarm.id != alarm_id:
            return False
        del self.alarms[key]
        return True

    def adopt(self, dropped: dict[str, str], stored: Iterable[AlarmState]) -> None:
        """Alarms this processor opened were dropped by the writer: another processor had
        stored the same items first (the unit moved to another worker with them in
        flight), and what it stored counts. Where a dropped alarm (id → key) is still the
        one this processor holds for its behaviour, the stored active alarm of that
        behaviour takes its place (or none is held): the next occurrence then extends the
        alarm in the database instead of one that is not there, or opens a second."""
        active = {a.key: a for a in stored if a.active}
        for alarm_id, key in dropped.items():
            mine = self.alarms.get(key)
            if mine is None or mine.id != alarm_id:
                continue  # replaced since (reopened, cleared): not this one's to fix
            if key in active:
                self.alarms[key] = active[key]
            else:
                del self.alarms[key]

    def process(
        self,
        items: list[DataItem],
        rejected: list[Rejection],
        acks: list[InterventionAck],
        now: datetime,
    ) -> StorePlan:
        """Both steps at once, grading with the vehicle state's own grader."""
        observed = self.observe(items, rejected, acks, now)
        return self.finish(observed, self.state.grader.grade_many(observed.inputs), now)

    def observe(
        self,
        items: list[DataItem],
        rejected: list[Rejection],
        acks: list[InterventionAck],
        now: datetime,
    ) -> Observed:
        """Step 1: state, geofences and rows; the alarms found wait for grading.

        Grading is left to the caller so that a server can grade the alarms of many
        vehicles in one call (a model predicts a batch about as fast as one row); call
        :meth:`finish` with the grades before observing this vehicle's next frame.
        """
        vid = self.vehicle.id
        plan = StorePlan(vid)
        steps: list[Detected | EndedConditions] = []
        state = self.state
        tracker = self.tracker
        index = self.zones.index
        if tracker.index is not index:
            tracker.replace_index(index)
        for item in items:
            if type(item) is Telemetry:
                plan.telemetry.append(
                    (
                        vid,
                        item.seq,
                        item.ts,
                        item.lat,
                        item.lon,
                        item.speed_kmh,
                        item.heading_deg,
                        item.driver_id,
                        item.ignition,
                        item.odometer_km,
                        _json(item.extra),
                    )
                )
                if item.tires:
                    for t in item.tires:
                        plan.tires.append(
                            (vid, item.seq, item.ts, t.pos, t.kpa, t.temp_c, t.sensor_battery_pct)
                        )
                zones = tracker.update(item.ts, item.lon, item.lat)
                if zones is not NO_ZONES and (zones.entered or zones.exited or zones.dwelling):
                    self._transitions(item, zones, plan)
                steps += state.detect_telemetry(item, zones)
                if item.tires and state.ended_conditions:
                    steps.append(EndedConditions(tuple(state.ended_conditions), item.ts))
            else:
                assert isinstance(item, DeviceEvent)
                plan.events.append(
                    (
                        vid,
                        item.seq,
                        item.ts,
                        now,
                        item.kind,
                        item.level,
                        item.lat,
                        item.lon,
                        item.speed_kmh,
                        item.driver_id,
                        _json(item.attrs),
                        _json(item.extra),
                    )
                )
                steps.append(state.detect_event(item))
        for r in rejected:
            plan.rejected.append((vid, r.seq, now, r.code, r.message, r.raw))
        for ack in acks:
            plan.device_statuses.append((ack.id, ack.status, now))
        if len(items) == 1 and not rejected:  # nearly every frame of a live unit
            plan.min_seq = plan.max_seq = items[0].seq
        else:
            seqs = [i.seq for i in items] + [r.seq for r in rejected if r.seq is not None]
            plan.min_seq = min(seqs, default=0)
            plan.max_seq = max(seqs, default=0)
        if plan.max_seq > self.seen_seq:
            self.seen_seq = plan.max_seq
        return Observed(plan, steps)

    def finish(self, observed: Observed, graded: Sequence[Graded], now: datetime) -> StorePlan:
        """Step 2: the graded alarms open, repeat or rise, in item order; what that
        triggers joins the plan. ``graded`` is one grade per ``observed.inputs``."""
        plan = observed.plan
        grades = iter(graded)
        for step in observed.steps:
            if type(step) is EndedConditions:
                self._ended(step.keys, step.ts, plan)
            else:
                assert isinstance(step, Detected)
                self._alarm(step.graded(next(grades)), plan, now)
        if next(grades, None) is not None:
            raise UsageError("more grades than alarms to grade")
        return plan

    def _transitions(self, t: Telemetry, zones: ZoneContext, plan: StorePlan) -> None:
        vid, rows = self.vehicle.id, plan.zone_transitions
        for ref in zones.entered:
            rows.append((vid, ref.id, "enter", t.ts, t.seq, t.lat, t.lon))
        for ref in zones.exited:
            rows.append((vid, ref.id, "exit", t.ts, t.seq, t.lat, t.lon))
        for ref in zones.dwelling:
            rows.append((vid, ref.id, "dwell", t.ts, t.seq, t.lat, t.lon))

    def _ended(self, keys: Iterable[str], ts: datetime, plan: StorePlan) -> None:
        """Tire conditions back to normal: their alarms clear (``condition_ended``)."""
        for key in keys:
            alarm = self.alarms.get(key)
            if alarm is not None and alarm.active:
                t = condition_ended(alarm, ts)
                self.alarms[key] = t.state
                plan.lifecycle.add_transition(t)

    def _alarm(self, c: AlarmCandidate, plan: StorePlan, now: datetime) -> None:
        late = c.ts < now - self.stale_after
        prior = self.alarms.get(c.key)
        if prior is None:
            t = open_alarm(
                self._new_id(),
                c.vehicle_id,
                c.key,
                c.kind,
                c.severity,
                c.ts,
                reason=c.reason,
                derived=c.derived,
                tire_pos=c.tire_pos,
            )
        else:
            t = occur(
                prior,
                c.severity,
                c.ts,
                reason=c.reason,
                policy=self.escalation.auto_clear,
                new_id=self._new_id,
            )
        alarm = t.state
        self.alarms[c.key] = alarm
        if t.opened:
            plan.alarms.append(
                (
                    alarm.id,
                    c.vehicle_id,
                    c.kind,
                    c.key,
                    alarm.severity,
                    alarm.reason,
                    alarm.derived,
                    c.level,
                    alarm.tire_pos,
                    c.seq,
                    c.ts,
                    c.seq,
                    c.ts,
                    1,
                    c.lat,
                    c.lon,
                    c.speed_kmh,
                    self.policy.version,
                    late,
                    c.probability,
                    c.model_version,
                    list(c.factors) if c.factors else None,
                )
            )
            plan.severities.append(alarm.severity)
        else:
            prior_repeat = plan.repeats.get(alarm.id)
            plan.repeats[alarm.id] = AlarmRepeat(
                alarm.id,
                c.seq,
                alarm.last_seen_at,  # never earlier than what is stored: a replay is older
                (prior_repeat.occurrences if prior_repeat else 0) + 1,
                alarm.severity,
                alarm.reason,
                c.probability,
                c.model_version,
                c.factors,
            )
        if t.audit:
            plan.lifecycle.add_transition(t)
        if not t.opened and t.raised_from is None:
            return  # a plain repeat triggers nothing
        actions = actions_for(t, now, policy=self.escalation, late=late, new_id=self._new_id)
        for action in actions:
            if type(action) is CabAlert:  # none for a late (replayed) alarm
                plan.interventions.append(
                    Intervention(
                        intervention_id(c.vehicle_id, c.seq, c.key, action.severity, action.action),
                        action.alarm_id,
                        c.vehicle_id,
                        action.severity,
                        action.action,
                        action.message,
                        c.seq,
                        c.kind,
                        now,
                    )
                )
        plan.lifecycle.add_actions(actions)
