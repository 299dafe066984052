"""Alarm lifecycle timelines: active/cleared × unacknowledged/acknowledged, audited."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from telematics.errors import ConfigError
from telematics.intervene.escalation import load_policy, parse_policy
from telematics.intervene.lifecycle import (
    AlarmError,
    AlarmState,
    AuditEntry,
    ClearPolicy,
    Lifecycle,
    acknowledge,
    assign,
    auto_clear_due,
    clear,
    comment,
    condition_ended,
    occur,
    open_alarm,
)

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
POLICY = load_policy().auto_clear


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fatigue(severity: str = "general", t: float = 0, kind: str = "fatigue") -> AlarmState:
    return open_alarm("A1", "SU-E12345", kind, kind, severity, at(t), reason=f"{kind} L1").state


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def test_open_is_active_unacknowledged_and_audited() -> None:
    t = open_alarm("A1", "V1", "fatigue", "fatigue", "moderate", at(0), reason="fatigue L2")
    assert t.opened and t.state.status == "ACTIVE_UNACK" and t.state.needs_attention
    assert [(e.action, e.actor, e.at) for e in t.audit] == [("opened", "system", at(0))]
    assert t.audit[0].detail["severity"] == "moderate"


def test_repeats_extend_the_same_alarm_without_audit_noise() -> None:
    state = fatigue()
    for i in range(1, 6):
        t = occur(state, "general", at(30 * i), policy=POLICY)
        assert not t.opened and not t.raised and t.audit == ()
        state = t.state
    assert state.id == "A1" and state.occurrences == 6
    assert state.last_seen_at == at(150) and state.opened_at == at(0)


def test_severity_rises_in_place_and_never_falls() -> None:
    state = fatigue("general")
    risen = occur(state, "severe", at(60), reason="fatigue L2 at 94 km/h", policy=POLICY)
    assert risen.state.id == "A1" and risen.raised_from == "general"
    assert risen.state.severity == "severe" and risen.state.reason == "fatigue L2 at 94 km/h"
    assert [e.action for e in risen.audit] == ["severity_raised"]
    assert risen.audit[0].detail == {
        "from": "general",
        "to": "severe",
        "reason": "fatigue L2 at 94 km/h",
    }
    lower = occur(risen.state, "moderate", at(90), reason="fatigue L1", policy=POLICY)
    assert lower.state.severity == "severe" and lower.audit == () and not lower.raised
    assert lower.state.reason == "fatigue L2 at 94 km/h"
    assert lower.state.occurrences == 3


def test_a_rise_voids_the_acknowledgement_of_the_lesser_risk() -> None:
    acked = acknowledge(fatigue("moderate"), "dispatcher.li", at(10)).state
    assert acked.status == "ACTIVE_ACK"
    t = occur(acked, "severe", at(20))
    assert t.state.status == "ACTIVE_UNACK" and t.state.acked_by is None
    assert [e.action for e in t.audit] == ["severity_raised", "unacknowledged"]
    assert t.audit[1].detail == {"reason": "severity_raised", "acked_by": "dispatcher.li"}


def test_ack_assign_comment_clear_are_each_audited_and_idempotent() -> None:
    state = fatigue()
    trail: list[AuditEntry] = []

    t = acknowledge(state, "  dispatcher.li ", at(5))
    state, trail = t.state, trail + list(t.audit)
    assert state.acknowledged and state.acked_by == "dispatcher.li" and state.acked_at == at(5)
    assert acknowledge(state, "dispatcher.wu", at(6)).audit == ()  # already acknowledged

    t = assign(state, "dispatcher.li", "safety.zhang", at(7))
    state, trail = t.state, trail + list(t.audit)
    assert state.assignee == "safety.zhang"
    assert assign(state, "dispatcher.li", "safety.zhang", at(8)).audit == ()

    t = comment(state, "safety.zhang", "Called the driver; stopping at the next area.", at(9))
    state, trail = t.state, trail + list(t.audit)

    t = assign(state, "safety.zhang", None, at(10))
    state, trail = t.state, trail + list(t.audit)
    assert state.assignee is None

    t = clear(state, "safety.zhang", "driver rested", at(11))
    state, trail = t.state, trail + list(t.audit)
    assert state.status == "CLEARED_ACK" and not state.needs_attention
    assert (state.cleared_at, state.cleared_by, state.clear_reason) == (
        at(11),
        "safety.zhang",
        "driver rested",
    )
    assert clear(state, "dispatcher.li", "again", at(12)).audit == ()

    assert [(e.action, e.actor) for e in trail] == [
        ("acknowledged", "dispatcher.li"),
        ("assigned", "dispatcher.li"),
        ("commented", "safety.zhang"),
        ("unassigned", "safety.zhang"),
        ("cleared", "safety.zhang"),
    ]
    assert trail[1].detail == {"from": None, "to": "safety.zhang"}
    assert trail[2].detail == {"text": "Called the driver; stopping at the next area."}
    assert trail[4].detail == {"reason": "driver rested"}
    assert all(e.alarm_id == "A1" for e in trail)


def test_cleared_unacknowledged_stays_on_the_list_until_acknowledged() -> None:
    state = clear(fatigue(), "dispatcher.li", "false alarm", at(5)).state
    assert state.status == "CLEARED_UNACK" and state.needs_attention
    state = acknowledge(state, "dispatcher.li", at(6)).state
    assert state.status == "CLEARED_ACK" and not state.needs_attention


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: comment(s, "li", "   ", at(1)), "comment"),
        (lambda s: comment(s, "li", "x" * 4001, at(1)), "comment"),
        (lambda s: acknowledge(s, " ", at(1)), "actor"),
        (lambda s: assign(s, "li", "y" * 201, at(1)), "assignee"),
        (lambda s: occur(s, "critical", at(1)), "severity"),
    ],
)
def test_bad_requests_are_refused(call: object, message: str) -> None:
    with pytest.raises(AlarmError, match=message):
        call(fatigue())  # type: ignore[operator]


def test_auto_clear_after_n_minutes_absent_per_kind() -> None:
    phone = fatigue(kind="phone_call")  # default: 5 min
    phone = occur(phone, "general", at(60)).state
    assert auto_clear_due(phone, at(60 + 299), POLICY) is None
    t = auto_clear_due(phone, at(60 + 300), POLICY)
    assert t is not None and t.state.status == "CLEARED_UNACK"
    assert t.state.cleared_at == at(360) and t.state.cleared_by == "system"
    assert [(e.action, e.detail) for e in t.audit] == [
        ("cleared", {"absent_s": 300.0, "reason": "absent"})
    ]
    # A timer that looks late (or a restarted server) clears as of the lapse, not of now.
    late = auto_clear_due(phone, at(60 + 3600), POLICY)
    assert late is not None and late.state.cleared_at == at(360)

    tired = fatigue(kind="fatigue")  # fatigue: 15 min in the policy
    assert auto_clear_due(tired, at(14 * 60), POLICY) is None
    assert auto_clear_due(tired, at(15 * 60), POLICY) is not None


def test_crash_and_panic_never_clear_by_themselves() -> None:
    for kind in ("collision", "rollover", "panic_button"):
        assert auto_clear_due(fatigue("severe", kind=kind), at(86_400), POLICY) is None


def test_tire_condition_clears_when_it_ends_not_by_absence() -> None:
    tire = open_alarm(
        "T1",
        "V1",
        "tire_pressure_low:2LO",
        "tire_pressure_low",
        "moderate",
        at(0),
        derived=True,
        tire_pos="2LO",
    ).state
    assert auto_clear_due(tire, at(86_400), POLICY) is None  # raised once on onset: no repeats
    t = condition_ended(tire, at(1800))
    assert t.state.status == "CLEARED_UNACK" and t.state.clear_reason == "condition_ended"
    assert [(e.action, e.actor, e.at) for e in t.audit] == [("cleared", "system", at(1800))]
    assert condition_ended(t.state, at(1900)).audit == ()
    # The same kind reported by the unit itself clears by absence (30 min for tires).
    device = AlarmState(**{**tire.to_dict(), "derived": False, "opened_at": at(0)})
    device = AlarmState.from_dict(device.to_dict())
    assert auto_clear_due(device, at(1799), POLICY) is None
    assert auto_clear_due(device, at(1800), POLICY) is not None


def test_new_occurrence_after_clear_opens_a_new_alarm() -> None:
    first = clear(fatigue("moderate"), "dispatcher.li", "handled", at(100)).state
    t = occur(first, "general", at(160), reason="fatigue L1", new_id=lambda: "A2")
    assert t.opened and t.state.id == "A2" and t.previous is None
    assert t.state.status == "ACTIVE_UNACK" and t.state.severity == "general"  # fresh start
    assert (t.state.opened_at, t.state.occurrences, t.state.key) == (at(160), 1, "fatigue")
    assert [(e.alarm_id, e.action) for e in t.audit] == [("A2", "opened")]
    assert first.status == "CLEARED_UNACK"  # the cleared one is never re-opened


def test_replayed_occurrence_from_before_the_clear_does_not_reopen() -> None:
    first = occur(fatigue(), "general", at(50)).state
    cleared = clear(first, "dispatcher.li", "handled", at(100)).state
    t = occur(cleared, "severe", at(80), new_id=lambda: "A2")  # a replay of an older event
    assert not t.opened and t.state.id == "A1" and not t.state.active
    assert t.state.occurrences == 3 and t.state.severity == "general" and t.audit == ()


def test_occurrence_after_the_absence_window_closes_the_old_and_opens_a_new() -> None:
    old = fatigue(kind="phone_call")
    t = occur(old, "moderate", at(400), policy=POLICY, new_id=lambda: "A2")
    assert t.opened and t.state.id == "A2" and t.state.opened_at == at(400)
    assert t.previous is not None and t.previous.id == "A1"
    assert t.previous.cleared_at == at(300) and t.previous.clear_reason == "absent"
    assert [(e.alarm_id, e.action) for e in t.audit] == [("A1", "cleared"), ("A2", "opened")]


def test_lifecycle_with_an_injected_clock() -> None:
    clock = FakeClock(T0)
    counter = itertools.count(1)
    life = Lifecycle(POLICY, clock, lambda: f"A{next(counter)}")
    state = life.open("V1", "smoking", "smoking", "general").state
    clock.advance(seconds=60)
    state = life.occur(state, "general").state
    assert state.last_seen_at == at(60)
    state = life.acknowledge(state, "dispatcher.li").state
    assert state.acked_at == at(60)
    clock.advance(seconds=299)
    assert life.auto_clear_due(state) is None
    clock.advance(seconds=1)
    lapsed = life.auto_clear_due(state)
    assert lapsed is not None and lapsed.state.status == "CLEARED_ACK"
    clock.advance(seconds=10)
    again = life.occur(lapsed.state, "general")
    assert again.opened and again.state.id == "A2" and again.state.opened_at == at(370)


def test_state_round_trips_through_json() -> None:
    state = assign(acknowledge(fatigue(), "li", at(3)).state, "li", "zhang", at(4)).state
    state = clear(state, "zhang", "done", at(5)).state
    again = AlarmState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    entry = AuditEntry("A1", at(1), "li", "commented", {"text": "hi"})
    assert AuditEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry


def test_policy_is_validated_with_named_settings() -> None:
    base = {
        "version": "t",
        "grades": {
            "general": {"cab_action": "voice_alert", "task": None},
            "moderate": {"cab_action": "voice_alert", "task": {"ack_within_s": 60}},
            "severe": {"cab_action": "voice_alert", "task": {"ack_within_s": 60}},
        },
    }
    policy = parse_policy(base)
    # unit_silent ends when the unit is heard, never by absence, whatever the file says
    assert policy.auto_clear == ClearPolicy(
        default_absent_s=600.0, condition_kinds=frozenset({"unit_silent"})
    )
    bad_clear = {**base, "auto_clear": {"absent_min": {"fatigue": 0}}}
    with pytest.raises(ConfigError, match=r"auto_clear.absent_min.fatigue"):
        parse_policy(bad_clear)
    with pytest.raises(ConfigError, match=r"auto_clear.manual_kinds: unknown kind"):
        parse_policy({**base, "auto_clear": {"manual_kinds": ["meteor"]}})
    chain = [{"after_s": 100, "target": "a"}, {"after_s": 50, "target": "b"}]
    grades = {**base["grades"], "severe": {"task": {"ack_within_s": 60, "chain": chain}}}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"grades.severe.task.chain\[1\].after_s"):
        parse_policy({**base, "grades": grades})
    with pytest.raises(ConfigError, match="grades"):
        parse_policy({**base, "grades": {"general": {}}})
