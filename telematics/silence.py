"""The ``unit_silent`` alarm, sans I/O: which units went silent on the road, and which
were heard from again.

A unit whose last fix showed its vehicle moving (at least ``silence.moving_kmh``) and from
which nothing has arrived for ``silence.silent_after_s`` (risk policy) gets one open
alarm: a crash, a cut power line to the camera, no coverage, tampering. A vehicle parked
when its unit went quiet is the end of a shift: nothing.

Silence is measured in the server's clock from ``heard_at`` (the last item stored or
reconnect; ``store/silence.py`` reads it), never from item timestamps: a unit replaying
its outbox after a gap sends old timestamps, but it is being heard now. Silence that
began before ``up_since`` (when this worker started, or last came back from a database
outage) is never counted: what the vehicle did while nobody listened is unknown, and
counting it would raise an alarm for every vehicle that was moving when the server
stopped and parked meanwhile.

One alarm per silence: a unit silent after its alarm was raised (or a dispatcher cleared
it by hand) is not raised again until it has been heard from. Heard again, the alarm
clears (``unit_heard``) as of the moment it was heard.

Severity: the risk policy's rules (``classify/context.py``), with the events table's
base (moderate by default) and ``silence.severe_classes`` (hazmat by default) severe
whatever the context. No model grades it: no model was trained on it (``ml/grader.py``).
The in-cab alert is left out by the interventions policy (``NO_CAB_KINDS``); the task,
escalation chain and insurer notice are as for any alarm of that grade.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from telematics.classify.context import GradingInput, RulesGrader
from telematics.classify.risk_policy import RiskPolicy
from telematics.ids import new_id
from telematics.intervene.escalation import (
    ClearRequest,
    InterventionPolicy,
    LifecycleWrites,
    actions_for,
)
from telematics.intervene.lifecycle import SYSTEM, AlarmState, open_alarm
from telematics.state.driving import LocalTime

KIND = "unit_silent"
KEY = KIND  # one per vehicle: the unit as a whole went quiet
CLEAR_REASON = "unit_heard"


@dataclass(frozen=True, slots=True)
class UnitContact:
    """What the store knows of one unit's contact with the server."""

    vehicle_id: str
    vehicle_class: str
    heard_at: datetime | None  # last item stored or reconnect (server clock); None: never
    last_seq: int
    fix_ts: datetime | None  # the newest fix (the unit's clock) and where and how fast
    lat: float | None = None
    lon: float | None = None
    speed_kmh: float | None = None
    open_alarm: AlarmState | None = None  # its active unit_silent alarm
    last_opened_at: datetime | None = None  # when its latest unit_silent alarm opened


@dataclass(frozen=True, slots=True)
class SilentAlarm:
    """A new unit_silent alarm and what its row records beside the lifecycle state."""

    alarm: AlarmState
    seq: int  # the last item heard before the silence
    lat: float
    lon: float
    speed_kmh: float
    rules_version: str


@dataclass(slots=True)
class SilencePlan:
    opened: list[SilentAlarm] = field(default_factory=list)
    # 'opened' audit rows, dispatcher tasks, insurer notices and the clears
    lifecycle: LifecycleWrites = field(default_factory=LifecycleWrites)


def silent_since(c: UnitContact, up_since: datetime) -> datetime | None:
    """When ``c``'s silence began, if it is one this worker may count (else None)."""
    if c.heard_at is None or c.heard_at < up_since:
        return None
    return c.heard_at


def was_moving(c: UnitContact, policy: RiskPolicy) -> bool:
    """Its last fix showed it moving, and that fix is from when it was last heard: a unit
    that streamed only events since an old fix says nothing about its speed now."""
    s = policy.silence
    if c.fix_ts is None or c.speed_kmh is None or c.heard_at is None:
        return False
    if c.fix_ts < c.heard_at - timedelta(seconds=s.silent_after_s):
        return False
    return c.speed_kmh >= s.moving_kmh


def plan_silence(
    contacts: Iterable[UnitContact],
    now: datetime,
    up_since: datetime,
    policy: RiskPolicy,
    escalation: InterventionPolicy,
    new_id: Callable[[], str] = new_id,
) -> SilencePlan:
    """The unit_silent alarms to open and to clear at ``now``."""
    plan = SilencePlan()
    after = timedelta(seconds=policy.silence.silent_after_s)
    grader = RulesGrader(policy)
    local = LocalTime(policy.driving)
    for c in contacts:
        alarm = c.open_alarm
        if alarm is not None:
            if c.heard_at is not None and c.heard_at > alarm.opened_at:
                plan.lifecycle.clears.append(
                    ClearRequest(
                        alarm.id,
                        c.heard_at,
                        CLEAR_REASON,
                        SYSTEM,
                        {"heard_at": c.heard_at.isoformat()},
                    )
                )
            continue
        since = silent_since(c, up_since)
        if since is None or now - since < after or not was_moving(c, policy):
            continue
        if c.last_opened_at is not None and c.last_opened_at >= since:
            continue  # raised for this silence already (and cleared by hand since)
        assert c.speed_kmh is not None  # was_moving
        x = GradingInput(
            kind=KIND,
            level=None,
            ts=now,
            speed_kmh=c.speed_kmh,
            speed_limit_kmh=None,
            vehicle_class=c.vehicle_class,
            load="unknown",
            night=local.is_night(now),
            zone_kinds=frozenset(),
            recurrence=1,
            continuous_driving_s=0.0,
            driving_today_s=0.0,
            derived=True,
            base="severe" if c.vehicle_class in policy.silence.severe_classes else None,
            detail=_detail(now - since, c.speed_kmh),
        )
        graded = grader.grade_one(x)
        # As of the moment it became due, not of this look: the same alarm whenever (and
        # by whichever worker) the timer gets to it.
        t = open_alarm(
            new_id(),
            c.vehicle_id,
            KEY,
            KIND,
            graded.severity,
            since + after,
            reason=graded.reason,
            derived=True,
        )
        plan.opened.append(
            SilentAlarm(
                t.state,
                c.last_seq,
                c.lat if c.lat is not None else 0.0,
                c.lon if c.lon is not None else 0.0,
                c.speed_kmh,
                policy.version,
            )
        )
        plan.lifecycle.add_transition(t)
        plan.lifecycle.add_actions(actions_for(t, now, policy=escalation, new_id=new_id))
    return plan


def _detail(silent: timedelta, speed_kmh: float) -> str:
    minutes = int(silent.total_seconds() // 60)
    return f"unit silent {minutes} min, last seen at {speed_kmh:.0f} km/h"
