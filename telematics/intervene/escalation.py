"""Graduated interventions and escalation, pure: what each grade triggers, and when.

The policy lives in one versioned file, ``escalation.json`` next to this module:

* ``general``  → an alert in the cab;
* ``moderate`` → the alert plus a dispatcher task that must be acknowledged within
  ``ack_within_s``; its chain tells the shift supervisor when it is overdue;
* ``severe``   → the alert, a task, an escalation chain (shift supervisor at once, safety
  manager after 2 minutes unacknowledged, fleet director after 10) and an outbox record
  for the insurer.

Everything here is plain data and functions of an explicit time. A task keeps the time its
chain started and how many steps already fired (``escalation_level``), so the state can be
stored, reloaded after a restart and asked again: steps that fell due while the server was
down fire once — each step is the pair (task, level), and the level only moves forward.
Acknowledgement stops the chain; a rise in severity upgrades the task to the higher
grade's chain, restarted from the rise (and voids an acknowledgement of the lesser risk).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from telematics.classify.alarms import SEVERITY_RANK
from telematics.config import read_json_object
from telematics.errors import ConfigError, UsageError
from telematics.ids import new_id
from telematics.intervene.lifecycle import (
    SYSTEM,
    AlarmState,
    AuditEntry,
    ClearPolicy,
    Transition,
    from_plain_dict,
    to_plain_dict,
    utc_now,
)
from telematics.intervene.policy import NO_CAB_KINDS, intervention_for
from telematics.protocol.messages import DERIVED_KINDS, EVENT_KINDS, SEVERITIES

CAB_ACTIONS = ("voice_alert", "display")
NO_ABSENCE_CLEAR = frozenset(("unit_silent",))
TASK_STATUSES = ("open", "acknowledged", "closed")


# -- the policy ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainStep:
    after_s: float  # since the chain started (the task was opened or upgraded)
    target: str  # a role: "shift_supervisor", "safety_manager", "fleet_director" …


@dataclass(frozen=True, slots=True)
class GradePolicy:
    cab_action: str | None  # protocol v1 action in the cab, or None for no in-cab alert
    ack_within_s: float | None  # None: no dispatcher task for this grade
    chain: tuple[ChainStep, ...] = ()
    insurer: bool = False

    @property
    def task(self) -> bool:
        return self.ack_within_s is not None


@dataclass(frozen=True, slots=True)
class InterventionPolicy:
    version: str
    grades: Mapping[str, GradePolicy]
    auto_clear: ClearPolicy

    def grade(self, severity: str) -> GradePolicy:
        try:
            return self.grades[severity]
        except KeyError:
            raise UsageError(f"unknown severity {severity!r}") from None

    def chain(self, severity: str) -> tuple[ChainStep, ...]:
        return self.grade(severity).chain


def parse_policy(data: Mapping[str, Any]) -> InterventionPolicy:
    """Validate a policy document; errors name the offending setting."""
    extra = sorted(set(data) - {"version", "grades", "auto_clear"})
    if extra:
        raise ConfigError(f"escalation policy: unknown key(s) {', '.join(extra)}")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise ConfigError("version: must be a non-empty string")
    grades_in = data.get("grades")
    if not isinstance(grades_in, Mapping) or set(grades_in) != set(SEVERITIES):
        raise ConfigError(f"grades: must have exactly {', '.join(SEVERITIES)}")
    grades = {s: _grade(grades_in[s], f"grades.{s}") for s in SEVERITIES}
    auto = data.get("auto_clear", {})
    if not isinstance(auto, Mapping):
        raise ConfigError("auto_clear: must be an object")
    clear = ClearPolicy.from_mapping(auto)
    # A silent unit's alarm ends when the unit is heard again, never by "absence": its
    # last_ts does not move while the unit stays silent, so no policy file may lapse it.
    clear = replace(clear, condition_kinds=clear.condition_kinds | NO_ABSENCE_CLEAR)
    known = EVENT_KINDS | DERIVED_KINDS
    for name, kinds in (
        ("absent_min", set(clear.absent_s)),
        ("condition_kinds", set(clear.condition_kinds)),
        ("manual_kinds", set(clear.manual_kinds)),
    ):
        unknown = sorted(kinds - known)
        if unknown:
            raise ConfigError(f"auto_clear.{name}: unknown kind(s) {', '.join(unknown)}")
    return InterventionPolicy(version, MappingProxyType(grades), clear)


def _grade(data: Any, where: str) -> GradePolicy:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be an object")
    extra = sorted(set(data) - {"cab_action", "task", "insurer"})
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}")
    cab = data.get("cab_action")
    if cab is not None and cab not in CAB_ACTIONS:
        raise ConfigError(f"{where}.cab_action: one of {', '.join(CAB_ACTIONS)} or null")
    insurer = data.get("insurer", False)
    if not isinstance(insurer, bool):
        raise ConfigError(f"{where}.insurer: must be true or false")
    task = data.get("task")
    if task is None:
        return GradePolicy(cab, None, (), insurer)
    if not isinstance(task, Mapping):
        raise ConfigError(f"{where}.task: must be an object or null")
    extra = sorted(set(task) - {"ack_within_s", "chain"})
    if extra:
        raise ConfigError(f"{where}.task: unknown key(s) {', '.join(extra)}")
    ack = task.get("ack_within_s", 300)
    if isinstance(ack, bool) or not isinstance(ack, (int, float)) or ack <= 0:
        raise ConfigError(f"{where}.task.ack_within_s: must be a positive number of seconds")
    chain_in = task.get("chain", [])
    if not isinstance(chain_in, list):
        raise ConfigError(f"{where}.task.chain: must be a list of steps")
    chain: list[ChainStep] = []
    for i, step in enumerate(chain_in):
        at = f"{where}.task.chain[{i}]"
        if not isinstance(step, Mapping) or set(step) != {"after_s", "target"}:
            raise ConfigError(f"{at}: must be {{after_s, target}}")
        after, target = step["after_s"], step["target"]
        if isinstance(after, bool) or not isinstance(after, (int, float)) or after < 0:
            raise ConfigError(f"{at}.after_s: must be a number of seconds ≥ 0")
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(f"{at}.target: must be a non-empty role name")
        if chain and after < chain[-1].after_s:
            raise ConfigError(f"{at}.after_s: steps must be in time order")
        chain.append(ChainStep(float(after), target.strip()))
    return GradePolicy(cab, float(ack), tuple(chain), insurer)


def load_policy(path: str | None = None) -> InterventionPolicy:
    """The packaged ``escalation.json``, or a complete policy file of your own."""
    if path is None:
        return _packaged()
    data = read_json_object(path, "escalation policy")
    try:
        return parse_policy(data)
    except ConfigError as exc:  # say which file: the message alone names only the setting
        raise ConfigError(f"escalation policy {path}: {exc}") from None


@cache
def _packaged() -> InterventionPolicy:
    text = resources.files("telematics.intervene").joinpath("escalation.json").read_text("utf-8")
    data = json.loads(text)
    assert isinstance(data, dict)
    return parse_policy(data)


# -- dispatcher tasks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchTask:
    """A dispatcher's to-do for one alarm, as plain data (the ``dispatch_tasks`` row)."""

    id: str
    alarm_id: str
    vehicle_id: str
    severity: str
    created_at: datetime
    due_at: datetime  # acknowledge by
    chain_started_at: datetime  # chain steps are timed from here (creation or last upgrade)
    escalation_level: int = 0  # steps of the current chain already fired
    next_escalation_at: datetime | None = None  # when the next step falls due; None: none
    status: str = "open"  # open | acknowledged | closed
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    closed_at: datetime | None = None
    policy_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DispatchTask:
        return cls(**from_plain_dict(cls, data, _TASK_TIMES))


_TASK_TIMES = frozenset(
    {
        "created_at",
        "due_at",
        "chain_started_at",
        "next_escalation_at",
        "acknowledged_at",
        "closed_at",
    }
)


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """One step of a chain that fell due: notify ``target`` about the task."""

    task_id: str
    alarm_id: str
    vehicle_id: str
    severity: str  # the chain it belongs to
    level: int  # 1-based position in that chain
    target: str
    due_at: datetime
    fired_at: datetime

    @property
    def late(self) -> bool:
        """Fired after its time (e.g. it fell due while the server was down)."""
        return self.fired_at > self.due_at


def next_escalation_at(task: DispatchTask, policy: InterventionPolicy) -> datetime | None:
    if task.status != "open":
        return None
    chain = policy.chain(task.severity)
    if task.escalation_level >= len(chain):
        return None
    return task.chain_started_at + timedelta(seconds=chain[task.escalation_level].after_s)


def _refresh(task: DispatchTask, policy: InterventionPolicy) -> DispatchTask:
    return replace(task, next_escalation_at=next_escalation_at(task, policy))


def new_task(
    alarm_id: str,
    vehicle_id: str,
    severity: str,
    now: datetime,
    policy: InterventionPolicy,
    task_id: str | None = None,
) -> DispatchTask | None:
    """The task a new alarm of ``severity`` needs, or None if its grade has none."""
    grade = policy.grade(severity)
    if grade.ack_within_s is None:
        return None
    task = DispatchTask(
        id=task_id or new_id(),
        alarm_id=alarm_id,
        vehicle_id=vehicle_id,
        severity=severity,
        created_at=now,
        due_at=now + timedelta(seconds=grade.ack_within_s),
        chain_started_at=now,
        policy_version=policy.version,
    )
    return _refresh(task, policy)


def acknowledge_task(
    task: DispatchTask, actor: str, at: datetime, policy: InterventionPolicy
) -> DispatchTask:
    """Someone took the task: its chain stops. Idempotent; a closed task stays closed."""
    if task.status != "open":
        return task
    return _refresh(
        replace(task, status="acknowledged", acknowledged_at=at, acknowledged_by=actor), policy
    )


def close_task(task: DispatchTask, at: datetime, policy: InterventionPolicy) -> DispatchTask:
    """The alarm was cleared: no more escalation. Idempotent."""
    if task.status == "closed":
        return task
    return _refresh(replace(task, status="closed", closed_at=at), policy)


def upgrade_task(
    task: DispatchTask, severity: str, at: datetime, policy: InterventionPolicy
) -> DispatchTask:
    """The alarm rose to ``severity``: the higher grade's chain, restarted from ``at``.

    An acknowledged task re-opens (its acknowledgement was for the lesser risk); a closed
    one (the alarm was cleared) stays closed; a lower or equal severity changes nothing.
    """
    if task.status == "closed" or SEVERITY_RANK[severity] <= SEVERITY_RANK[task.severity]:
        return task
    grade = policy.grade(severity)
    if grade.ack_within_s is None:
        return task
    due = at + timedelta(seconds=grade.ack_within_s)
    if task.status == "open":
        due = min(due, task.due_at)
    upgraded = replace(
        task,
        severity=severity,
        status="open",
        due_at=due,
        chain_started_at=at,
        escalation_level=0,
        acknowledged_at=None,
        acknowledged_by=None,
        policy_version=policy.version,
    )
    return _refresh(upgraded, policy)


def fire_due(
    task: DispatchTask, now: datetime, policy: InterventionPolicy
) -> tuple[DispatchTask, list[EscalationStep]]:
    """The steps of ``task``'s chain due by ``now`` that have not fired, and the task after.

    Store the returned task before (or atomically with) notifying: its level is what makes
    each step fire once, even across a restart.
    """
    if task.status != "open":
        return task, []
    chain = policy.chain(task.severity)
    level = task.escalation_level
    steps: list[EscalationStep] = []
    while level < len(chain):
        due = task.chain_started_at + timedelta(seconds=chain[level].after_s)
        if due > now:
            break
        level += 1
        steps.append(
            EscalationStep(
                task.id,
                task.alarm_id,
                task.vehicle_id,
                task.severity,
                level,
                chain[level - 1].target,
                due,
                now,
            )
        )
    if not steps:
        return task, []
    return _refresh(replace(task, escalation_level=level), policy), steps


def is_overdue(task: DispatchTask, now: datetime) -> bool:
    return task.status == "open" and now >= task.due_at


# -- what an alarm triggers -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CabAlert:
    """An intervention for the cab (protocol v1 ``intervention`` frame)."""

    alarm_id: str
    vehicle_id: str
    severity: str
    action: str  # "voice_alert" | "display"
    message: str


@dataclass(frozen=True, slots=True)
class OpenTask:
    """A new alarm's dispatcher task: insert it with the alarm."""

    task: DispatchTask


@dataclass(frozen=True, slots=True)
class UpgradeTask:
    """An alarm rose: upgrade its task under lock, or open ``new_task_id`` if it has none."""

    alarm_id: str
    vehicle_id: str
    severity: str
    previous_severity: str
    at: datetime
    new_task_id: str


@dataclass(frozen=True, slots=True)
class InsurerNotice:
    """A row for the insurer outbox (delivered later by the insurer webhooks)."""

    alarm_id: str
    vehicle_id: str
    created_at: datetime
    payload: Mapping[str, Any]
    kind: str = "severe_alarm"


Action = CabAlert | OpenTask | UpgradeTask | InsurerNotice


def plan_actions(
    alarm: AlarmState,
    severity: str | None,
    now: datetime,
    *,
    policy: InterventionPolicy | None = None,
    previous_severity: str | None = None,
    late: bool = False,
    new_id: Callable[[], str] = new_id,
) -> list[Action]:
    """What a new alarm (``previous_severity`` None) or a rise in severity triggers.

    Call it only when an alarm opens or rises; plain repeats trigger nothing. ``late``: the
    occurrence is a stale replay, so no in-cab alert — the dispatcher and insurer still
    hear of it; nor do kinds the cab cannot hear (``NO_CAB_KINDS``: a silent unit).
    """
    policy = policy or load_policy()
    severity = severity or alarm.severity
    grade = policy.grade(severity)
    if previous_severity is not None and (
        SEVERITY_RANK[severity] <= SEVERITY_RANK[previous_severity]
    ):
        return []
    actions: list[Action] = []
    if grade.cab_action is not None and not late and alarm.kind not in NO_CAB_KINDS:
        spec = intervention_for(alarm.kind, severity, alarm.tire_pos)
        actions.append(
            CabAlert(alarm.id, alarm.vehicle_id, severity, grade.cab_action, spec.message)
        )
    if grade.task:
        if previous_severity is None:
            task = new_task(alarm.id, alarm.vehicle_id, severity, now, policy, new_id())
            assert task is not None
            actions.append(OpenTask(task))
        else:
            actions.append(
                UpgradeTask(alarm.id, alarm.vehicle_id, severity, previous_severity, now, new_id())
            )
    if grade.insurer and (previous_severity is None or not policy.grade(previous_severity).insurer):
        actions.append(
            InsurerNotice(
                alarm.id, alarm.vehicle_id, now, insurer_payload(alarm, severity, now, policy, late)
            )
        )
    return actions


def insurer_payload(
    alarm: AlarmState, severity: str, now: datetime, policy: InterventionPolicy, late: bool
) -> dict[str, Any]:
    return {
        "type": "severe_alarm",
        "alarm_id": alarm.id,
        "vehicle_id": alarm.vehicle_id,
        "kind": alarm.kind,
        "key": alarm.key,
        "severity": severity,
        "reason": alarm.reason,
        "opened_at": alarm.opened_at.isoformat(),
        "last_seen_at": alarm.last_seen_at.isoformat(),
        "occurrences": alarm.occurrences,
        "tire_pos": alarm.tire_pos,
        "late": late,
        "notified_at": now.isoformat(),
        "policy_version": policy.version,
    }


def actions_for(
    transition: Transition,
    now: datetime,
    *,
    policy: InterventionPolicy | None = None,
    late: bool = False,
    new_id: Callable[[], str] = new_id,
) -> list[Action]:
    """``plan_actions`` for the result of ``occur`` / ``open_alarm`` (nothing for a repeat)."""
    state = transition.state
    if transition.opened:
        return plan_actions(state, state.severity, now, policy=policy, late=late, new_id=new_id)
    if transition.raised_from is not None:
        return plan_actions(
            state,
            state.severity,
            now,
            policy=policy,
            previous_severity=transition.raised_from,
            late=late,
            new_id=new_id,
        )
    return []


# -- the in-memory scheduler ------------------------------------------------------------


class EscalationTimer:
    """Open tasks and the clock → which escalation steps are due.

    Its whole state is ``snapshot()`` (JSON-able): store it, rebuild with ``restore`` and
    ``due()`` fires what fell due meanwhile — once, as long as the snapshot is taken after
    ``due()`` returned (the database path, ``store.alarms.fire_due_escalations``, does the
    same under a row lock in one transaction).
    """

    def __init__(
        self,
        policy: InterventionPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        tasks: Iterable[DispatchTask] = (),
    ) -> None:
        self.policy = policy or load_policy()
        self.clock = clock
        self._tasks: dict[str, DispatchTask] = {}
        self._by_alarm: dict[str, str] = {}
        for task in tasks:
            self.add(task)

    @property
    def tasks(self) -> list[DispatchTask]:
        return list(self._tasks.values())

    def get(self, task_id: str) -> DispatchTask:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise UsageError(f"no task {task_id!r}") from None

    def for_alarm(self, alarm_id: str) -> DispatchTask | None:
        task_id = self._by_alarm.get(alarm_id)
        return None if task_id is None else self._tasks[task_id]

    def add(self, task: DispatchTask) -> DispatchTask:
        self._tasks[task.id] = task = _refresh(task, self.policy)
        self._by_alarm[task.alarm_id] = task.id
        return task

    def apply(self, actions: Iterable[Action]) -> None:
        """Take the task actions of ``plan_actions`` (cab alerts and outbox rows are not ours)."""
        for action in actions:
            if isinstance(action, OpenTask):
                self.add(action.task)
            elif isinstance(action, UpgradeTask):
                existing = self.for_alarm(action.alarm_id)
                if existing is not None:
                    self._put(upgrade_task(existing, action.severity, action.at, self.policy))
                    continue
                task = new_task(
                    action.alarm_id,
                    action.vehicle_id,
                    action.severity,
                    action.at,
                    self.policy,
                    action.new_task_id,
                )
                if task is not None:
                    self.add(task)

    def acknowledge(self, task_id: str, actor: str, at: datetime | None = None) -> DispatchTask:
        now = self.clock() if at is None else at
        return self._put(acknowledge_task(self.get(task_id), actor, now, self.policy))

    def upgrade(self, task_id: str, severity: str, at: datetime | None = None) -> DispatchTask:
        now = self.clock() if at is None else at
        return self._put(upgrade_task(self.get(task_id), severity, now, self.policy))

    def close(self, task_id: str, at: datetime | None = None) -> DispatchTask:
        now = self.clock() if at is None else at
        return self._put(close_task(self.get(task_id), now, self.policy))

    def due(self, now: datetime | None = None) -> list[EscalationStep]:
        """Every step due by ``now`` that has not fired yet, in time order; marks them fired."""
        at = self.clock() if now is None else now
        fired: list[EscalationStep] = []
        for task in list(self._tasks.values()):
            if task.next_escalation_at is None or task.next_escalation_at > at:
                continue
            advanced, steps = fire_due(task, at, self.policy)
            self._tasks[task.id] = advanced
            fired.extend(steps)
        fired.sort(key=lambda s: (s.due_at, s.task_id, s.level))
        return fired

    def overdue(self, now: datetime | None = None) -> list[DispatchTask]:
        at = self.clock() if now is None else now
        return [t for t in self._tasks.values() if is_overdue(t, at)]

    def next_wakeup(self) -> datetime | None:
        times = [t.next_escalation_at for t in self._tasks.values() if t.next_escalation_at]
        return min(times, default=None)

    def snapshot(self) -> dict[str, Any]:
        return {
            "policy_version": self.policy.version,
            "tasks": [t.to_dict() for t in self._tasks.values()],
        }

    @classmethod
    def restore(
        cls,
        snapshot: Mapping[str, Any],
        policy: InterventionPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> EscalationTimer:
        return cls(policy, clock, (DispatchTask.from_dict(t) for t in snapshot["tasks"]))

    def _put(self, task: DispatchTask) -> DispatchTask:
        self._tasks[task.id] = task
        return task


# -- what the batch writer commits with the alarms -----------------------------------------


@dataclass(frozen=True, slots=True)
class ClearRequest:
    """Clear an alarm (if still active) under lock: an auto-clear found by the pipeline."""

    alarm_id: str
    at: datetime
    reason: str
    actor: str = SYSTEM
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True, init=False)
class LifecycleWrites:
    """The lifecycle rows one store plan adds, committed in the alarms' transaction.

    Feed it every ``Transition`` (``add_transition``) and every list of actions
    (``add_actions``); ``store.alarms.write_lifecycle`` writes it. Clears and the
    acknowledgement reset of a rise are re-derived under the row lock there, because a
    dispatcher may have changed the alarm meanwhile.
    """

    audit: list[AuditEntry]
    tasks: list[DispatchTask]
    upgrades: list[UpgradeTask]
    insurer: list[InsurerNotice]
    clears: list[ClearRequest]

    def __init__(
        self,
        audit: list[AuditEntry] | None = None,
        tasks: list[DispatchTask] | None = None,
        upgrades: list[UpgradeTask] | None = None,
        insurer: list[InsurerNotice] | None = None,
        clears: list[ClearRequest] | None = None,
    ) -> None:
        # Written out: every store plan (one per frame) builds one, nearly always empty.
        self.audit = [] if audit is None else audit
        self.tasks = [] if tasks is None else tasks
        self.upgrades = [] if upgrades is None else upgrades
        self.insurer = [] if insurer is None else insurer
        self.clears = [] if clears is None else clears

    def __bool__(self) -> bool:
        return bool(self.audit or self.tasks or self.upgrades or self.insurer or self.clears)

    def add_transition(self, transition: Transition) -> None:
        for entry in transition.audit:
            if entry.action == "cleared":
                detail = {k: v for k, v in entry.detail.items() if k != "reason"}
                reason = str(entry.detail.get("reason", "")) or "absent"
                self.clears.append(
                    ClearRequest(entry.alarm_id, entry.at, reason, entry.actor, detail)
                )
            elif entry.action != "unacknowledged":
                self.audit.append(entry)

    def add_actions(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, OpenTask):
                self.tasks.append(action.task)
            elif isinstance(action, UpgradeTask):
                self.upgrades.append(action)
            elif isinstance(action, InsurerNotice):
                self.insurer.append(action)

    def extend(self, other: LifecycleWrites) -> None:
        self.audit += other.audit
        self.tasks += other.tasks
        self.upgrades += other.upgrades
        self.insurer += other.insurer
        self.clears += other.clears

    def keep(self, alarm_ids: set[str] | frozenset[str]) -> LifecycleWrites:
        """Only what concerns ``alarm_ids`` (the writer drops replayed duplicates).

        Clear requests are all kept: they usually concern an older alarm than the plan's
        own (the one that lapsed), and applying one twice changes nothing.
        """
        return LifecycleWrites(
            [a for a in self.audit if a.alarm_id in alarm_ids],
            [t for t in self.tasks if t.alarm_id in alarm_ids],
            [u for u in self.upgrades if u.alarm_id in alarm_ids],
            [n for n in self.insurer if n.alarm_id in alarm_ids],
            list(self.clears),
        )
