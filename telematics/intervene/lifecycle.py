"""Alarm lifecycle, pure: two axes (active / cleared × unacknowledged / acknowledged).

The model of the best dispatch systems (ThingsBoard's alarm states): an alarm is opened by
the first occurrence of a behaviour on a vehicle; repeats extend it (``last_seen_at``,
``occurrences``) and may raise its severity in place, never lower it. It is cleared by a
dispatcher (``clear``), when the behaviour has been absent for N minutes
(``auto_clear_due``, per kind from the policy) or, for conditions such as a low tire, when
the condition ends (``condition_ended``). Acknowledgement is the other axis: a cleared alarm
nobody acknowledged stays "cleared, unacknowledged" until someone does.

There is one open (active) alarm per vehicle and behaviour key: an occurrence after the
clear opens a NEW alarm with a new id; the cleared one is never re-opened.

Every function takes the time explicitly (the caller's clock; :class:`Lifecycle` binds
one) and returns a :class:`Transition`: the new state plus the audit entries to store.
A call that changes nothing returns the same state and no audit entry, so every function
is idempotent and safe to repeat after a retry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from telematics.classify.alarms import SEVERITY_RANK
from telematics.errors import ConfigError, TelematicsError
from telematics.ids import new_id

#: The actor of automatic transitions (audit ``actor``).
SYSTEM = "system"

#: Every audit action, in the order they usually happen.
AUDIT_ACTIONS = (
    "opened",
    "severity_raised",
    "acknowledged",
    "unacknowledged",  # a rise in severity voids an acknowledgement of the lesser risk
    "assigned",
    "unassigned",
    "commented",
    "cleared",
)

MAX_COMMENT_CHARS = 4000
MAX_ACTOR_CHARS = 200


class AlarmError(TelematicsError):
    """A lifecycle request that cannot be applied (empty comment, unknown alarm …)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of an alarm's audit trail; ``detail`` is JSON-able."""

    alarm_id: str
    at: datetime
    actor: str
    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alarm_id": self.alarm_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        return cls(
            str(data["alarm_id"]),
            datetime.fromisoformat(data["at"]),
            str(data["actor"]),
            str(data["action"]),
            dict(data.get("detail") or {}),
        )


@dataclass(frozen=True, slots=True)
class AlarmState:
    """One alarm as plain data (stored in the ``alarms`` row; see ``to_dict``)."""

    id: str
    vehicle_id: str
    key: str  # "the same behaviour", e.g. "fatigue" or "tire_pressure_low:2LO"
    kind: str
    severity: str
    opened_at: datetime  # first occurrence (alarms.first_ts)
    last_seen_at: datetime  # latest occurrence (alarms.last_ts)
    reason: str = ""
    derived: bool = False  # raised by the server from telemetry (tire conditions …)
    tire_pos: str | None = None
    occurrences: int = 1
    active: bool = True
    acknowledged: bool = False
    assignee: str | None = None
    cleared_at: datetime | None = None
    cleared_by: str | None = None
    clear_reason: str | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    state_changed_at: datetime | None = None  # last change of either axis (or of severity)
    # How the stored severity was graded, when a trained model graded it (ml/).
    probability: float | None = None  # of a collision within the model's horizon
    model_version: str | None = None
    factors: tuple[str, ...] = ()  # what raised the probability most, in words

    def __post_init__(self) -> None:
        # The alarms row holds a text[] (a list, or NULL) and timer state a JSON list;
        # whichever built the alarm, it holds a tuple.
        if type(self.factors) is not tuple:
            object.__setattr__(self, "factors", tuple(self.factors or ()))

    @property
    def status(self) -> str:
        """ThingsBoard's combined status, e.g. ``ACTIVE_UNACK`` or ``CLEARED_ACK``."""
        return f"{'ACTIVE' if self.active else 'CLEARED'}_{'ACK' if self.acknowledged else 'UNACK'}"

    @property
    def needs_attention(self) -> bool:
        """On the dispatcher's list: still active, or cleared but never acknowledged."""
        return self.active or not self.acknowledged

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlarmState:
        return cls(**from_plain_dict(cls, data, _TIME_FIELDS))


_TIME_FIELDS = frozenset(
    ("opened_at", "last_seen_at", "cleared_at", "acked_at", "state_changed_at")
)


def to_plain_dict(record: Any) -> dict[str, Any]:
    """A dataclass as JSON-ready data (times as ISO strings), for storing timer state."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def from_plain_dict(
    cls: Any, data: Mapping[str, Any], time_fields: frozenset[str]
) -> dict[str, Any]:
    """The constructor arguments of ``cls`` from :func:`to_plain_dict` data."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in time_fields and isinstance(value, str):
            value = datetime.fromisoformat(value)
        values[f.name] = value
    return values


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of a lifecycle step.

    ``state`` is the alarm after the step; for an occurrence that found the previous alarm
    cleared or lapsed it is a NEW alarm (``opened``) and ``previous`` is the old one as it
    was closed by this step (``None`` if it was already closed before).
    """

    state: AlarmState
    audit: tuple[AuditEntry, ...] = ()
    opened: bool = False
    raised_from: str | None = None  # the severity before a rise in place
    previous: AlarmState | None = None

    @property
    def raised(self) -> bool:
        return self.raised_from is not None


@dataclass(frozen=True, slots=True)
class ClearPolicy:
    """When alarms clear by themselves (the ``auto_clear`` section of the policy file).

    ``manual_kinds`` never clear automatically (a crash, a panic press); derived alarms of
    ``condition_kinds`` clear only when their condition ends (``condition_ended``) because
    their monitor raises them once on onset rather than repeating them. Every other alarm
    clears once its behaviour has been absent for ``absent_s[kind]`` (or the default).
    """

    default_absent_s: float = 600.0
    absent_s: Mapping[str, float] = field(default_factory=dict)
    condition_kinds: frozenset[str] = frozenset()
    manual_kinds: frozenset[str] = frozenset()

    def absent_after(self, kind: str, derived: bool) -> timedelta | None:
        """How long ``kind`` must be absent before the alarm clears; None: never by absence."""
        if kind in self.manual_kinds or (derived and kind in self.condition_kinds):
            return None
        return timedelta(seconds=self.absent_s.get(kind, self.default_absent_s))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "auto_clear") -> ClearPolicy:
        known = {"default_absent_min", "absent_min", "condition_kinds", "manual_kinds"}
        extra = sorted(set(data) - known)
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}")

        def minutes(value: Any, name: str) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{where}.{name}: must be a positive number of minutes")
            return float(value) * 60.0

        def kinds(name: str) -> frozenset[str]:
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
                raise ConfigError(f"{where}.{name}: must be a list of kinds")
            return frozenset(value)

        absent = data.get("absent_min", {})
        if not isinstance(absent, Mapping):
            raise ConfigError(f"{where}.absent_min: must be an object kind → minutes")
        return cls(
            default_absent_s=minutes(data.get("default_absent_min", 10), "default_absent_min"),
            absent_s={k: minutes(v, f"absent_min.{k}") for k, v in absent.items()},
            condition_kinds=kinds("condition_kinds"),
            manual_kinds=kinds("manual_kinds"),
        )


def _check_severity(severity: str) -> None:
    if severity not in SEVERITY_RANK:
        raise AlarmError(f"unknown severity {severity!r}")


def _check_actor(actor: str) -> str:
    actor = actor.strip() if isinstance(actor, str) else ""
    if not actor:
        raise AlarmError("actor: must be a non-empty name")
    if len(actor) > MAX_ACTOR_CHARS:
        raise AlarmError(f"actor: longer than {MAX_ACTOR_CHARS} characters")
    return actor


# -- opening and occurrences -------------------------------------------------------------


def open_alarm(
    alarm_id: str,
    vehicle_id: str,
    key: str,
    kind: str,
    severity: str,
    ts: datetime,
    *,
    reason: str = "",
    derived: bool = False,
    tire_pos: str | None = None,
) -> Transition:
    """The first occurrence of a behaviour on a vehicle: a new active, unacknowledged alarm."""
    _check_severity(severity)
    state = AlarmState(
        id=alarm_id,
        vehicle_id=vehicle_id,
        key=key,
        kind=kind,
        severity=severity,
        opened_at=ts,
        last_seen_at=ts,
        reason=reason,
        derived=derived,
        tire_pos=tire_pos,
        state_changed_at=ts,
    )
    detail = {"severity": severity, "kind": kind, "key": key, "reason": reason}
    return Transition(state, (AuditEntry(alarm_id, ts, SYSTEM, "opened", detail),), opened=True)


def occur(
    state: AlarmState,
    severity: str,
    ts: datetime,
    *,
    reason: str | None = None,
    policy: ClearPolicy | None = None,
    new_id: Callable[[], str] = new_id,
) -> Transition:
    """Another occurrence of ``state``'s behaviour at ``ts`` (event time).

    * active alarm: extends it; a higher severity rises in place (and voids an
      acknowledgement of the lesser risk); a lower one never lowers it;
    * active alarm whose behaviour was absent long enough to auto-clear (needs ``policy``):
      the old alarm is cleared as of the moment it lapsed and a new one opens;
    * cleared alarm: a new alarm opens, except for a late (replayed) occurrence from before
      the clear, which is only counted on the cleared alarm.
    """
    _check_severity(severity)
    if state.active and policy is not None:
        lapsed = auto_clear_due(state, ts, policy)
        if lapsed is not None:
            fresh = _reopen(state, severity, ts, reason, new_id)
            return Transition(
                fresh.state, lapsed.audit + fresh.audit, opened=True, previous=lapsed.state
            )
    if not state.active:
        closed_at = state.cleared_at or state.last_seen_at
        if ts <= closed_at:  # replayed from before the clear: history, not a new episode
            return Transition(
                replace(
                    state,
                    occurrences=state.occurrences + 1,
                    last_seen_at=max(state.last_seen_at, ts),
                )
            )
        return _reopen(state, severity, ts, reason, new_id)
    extended = replace(
        state, occurrences=state.occurrences + 1, last_seen_at=max(state.last_seen_at, ts)
    )
    if SEVERITY_RANK[severity] <= SEVERITY_RANK[state.severity]:
        return Transition(extended)
    audit = [
        AuditEntry(
            state.id,
            ts,
            SYSTEM,
            "severity_raised",
            {"from": state.severity, "to": severity, "reason": reason or ""},
        )
    ]
    risen = replace(
        extended,
        severity=severity,
        reason=state.reason if reason is None else reason,
        state_changed_at=ts,
    )
    if state.acknowledged:
        risen = replace(risen, acknowledged=False, acked_at=None, acked_by=None)
        audit.append(
            AuditEntry(
                state.id,
                ts,
                SYSTEM,
                "unacknowledged",
                {"reason": "severity_raised", "acked_by": state.acked_by},
            )
        )
    return Transition(risen, tuple(audit), raised_from=state.severity)


def _reopen(
    old: AlarmState, severity: str, ts: datetime, reason: str | None, new_id: Callable[[], str]
) -> Transition:
    return open_alarm(
        new_id(),
        old.vehicle_id,
        old.key,
        old.kind,
        severity,
        ts,
        reason=old.reason if reason is None else reason,
        derived=old.derived,
        tire_pos=old.tire_pos,
    )


# -- dispatcher actions ------------------------------------------------------------------


def acknowledge(state: AlarmState, actor: str, at: datetime) -> Transition:
    """Someone has taken note; allowed on active and on cleared alarms. Idempotent."""
    actor = _check_actor(actor)
    if state.acknowledged:
        return Transition(state)
    acked = replace(state, acknowledged=True, acked_at=at, acked_by=actor, state_changed_at=at)
    return Transition(acked, (AuditEntry(state.id, at, actor, "acknowledged", {}),))


def assign(state: AlarmState, actor: str, assignee: str | None, at: datetime) -> Transition:
    """Give the alarm to ``assignee`` (``None`` or "" unassigns). Idempotent."""
    actor = _check_actor(actor)
    who = assignee.strip() if assignee else None
    if who is not None and len(who) > MAX_ACTOR_CHARS:
        raise AlarmError(f"assignee: longer than {MAX_ACTOR_CHARS} characters")
    who = who or None
    if who == state.assignee:
        return Transition(state)
    detail = {"from": state.assignee, "to": who}
    action = "assigned" if who is not None else "unassigned"
    return Transition(
        replace(state, assignee=who), (AuditEntry(state.id, at, actor, action, detail),)
    )


def comment(state: AlarmState, actor: str, text: str, at: datetime) -> Transition:
    """A free-text note on the alarm's audit trail (comments live there)."""
    actor = _check_actor(actor)
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise AlarmError("comment: must not be empty")
    if len(text) > MAX_COMMENT_CHARS:
        raise AlarmError(f"comment: longer than {MAX_COMMENT_CHARS} characters")
    return Transition(state, (AuditEntry(state.id, at, actor, "commented", {"text": text}),))


def clear(
    state: AlarmState,
    actor: str,
    reason: str,
    at: datetime,
    detail: Mapping[str, Any] | None = None,
) -> Transition:
    """Close the alarm (the behaviour or condition is over). Idempotent."""
    actor = _check_actor(actor)
    if not state.active:
        return Transition(state)
    return _clear(state, actor, (reason or "").strip() or "manual", at, detail or {})


def _clear(
    state: AlarmState, actor: str, reason: str, at: datetime, extra: Mapping[str, Any]
) -> Transition:
    cleared = replace(
        state,
        active=False,
        cleared_at=at,
        cleared_by=actor,
        clear_reason=reason,
        state_changed_at=at,
    )
    detail = {**extra, "reason": reason}
    return Transition(cleared, (AuditEntry(state.id, at, actor, "cleared", detail),))


# -- automatic clears ----------------------------------------------------------------


def auto_clear_due(state: AlarmState, now: datetime, policy: ClearPolicy) -> Transition | None:
    """The automatic clear of an alarm whose behaviour has been absent long enough, else None.

    The alarm is cleared as of the moment it lapsed (``last_seen_at`` + the absence), not
    of ``now``, so the result does not depend on how late the timer (or a restarted
    server) looks at it.
    """
    if not state.active:
        return None
    absent = policy.absent_after(state.kind, state.derived)
    if absent is None or now - state.last_seen_at < absent:
        return None
    at = state.last_seen_at + absent
    return _clear(state, SYSTEM, "absent", at, {"absent_s": absent.total_seconds()})


def condition_ended(state: AlarmState, ts: datetime) -> Transition:
    """The condition behind the alarm is over (e.g. the tire is back to normal). Idempotent."""
    if not state.active:
        return Transition(state)
    return _clear(state, SYSTEM, "condition_ended", ts, {})


# -- a clock-bound facade --------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


class Lifecycle:
    """The same operations bound to one clock, policy and id factory (tests pass fakes)."""

    def __init__(
        self,
        policy: ClearPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = new_id,
    ) -> None:
        self.policy = policy or ClearPolicy()
        self.clock = clock
        self.new_id = new_id

    def open(
        self,
        vehicle_id: str,
        key: str,
        kind: str,
        severity: str,
        ts: datetime | None = None,
        **attrs: Any,
    ) -> Transition:
        at = self.clock() if ts is None else ts
        return open_alarm(self.new_id(), vehicle_id, key, kind, severity, at, **attrs)

    def occur(
        self,
        state: AlarmState,
        severity: str,
        ts: datetime | None = None,
        reason: str | None = None,
    ) -> Transition:
        at = self.clock() if ts is None else ts
        return occur(state, severity, at, reason=reason, policy=self.policy, new_id=self.new_id)

    def acknowledge(self, state: AlarmState, actor: str) -> Transition:
        return acknowledge(state, actor, self.clock())

    def assign(self, state: AlarmState, actor: str, assignee: str | None) -> Transition:
        return assign(state, actor, assignee, self.clock())

    def comment(self, state: AlarmState, actor: str, text: str) -> Transition:
        return comment(state, actor, text, self.clock())

    def clear(self, state: AlarmState, actor: str, reason: str = "manual") -> Transition:
        return clear(state, actor, reason, self.clock())

    def auto_clear_due(self, state: AlarmState) -> Transition | None:
        return auto_clear_due(state, self.clock(), self.policy)

    def condition_ended(self, state: AlarmState, ts: datetime | None = None) -> Transition:
        return condition_ended(state, self.clock() if ts is None else ts)
