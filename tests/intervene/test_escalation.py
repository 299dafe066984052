"""Graduated interventions and the escalation timer, with a controllable clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from telematics.intervene.escalation import (
    CabAlert,
    ClearRequest,
    EscalationStep,
    EscalationTimer,
    InsurerNotice,
    LifecycleWrites,
    OpenTask,
    UpgradeTask,
    actions_for,
    fire_due,
    is_overdue,
    load_policy,
    new_task,
    plan_actions,
)
from telematics.intervene.lifecycle import AlarmState, occur, open_alarm

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
POLICY = load_policy()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def to(self, seconds: float) -> datetime:
        self.now = at(seconds)
        return self.now


def alarm(severity: str, kind: str = "fatigue", alarm_id: str = "A1") -> AlarmState:
    return open_alarm(alarm_id, "SU-E12345", kind, kind, severity, T0, reason=f"{kind} L2").state


def targets(steps: list[EscalationStep]) -> list[tuple[str, int]]:
    return [(s.target, s.level) for s in steps]


def test_policy_file_is_versioned_and_graded() -> None:
    assert POLICY.version.startswith("2026-12-interventions")
    assert POLICY.grade("general").task is False
    assert POLICY.grade("moderate").ack_within_s == 300
    severe = POLICY.grade("severe")
    assert severe.insurer and [(s.after_s, s.target) for s in severe.chain] == [
        (0, "shift_supervisor"),
        (120, "safety_manager"),
        (600, "fleet_director"),
    ]


def test_general_is_a_voice_alert_in_the_cab_only() -> None:
    actions = plan_actions(alarm("general"), "general", T0)
    assert len(actions) == 1 and isinstance(actions[0], CabAlert)
    assert actions[0].action == "voice_alert" and "fatigue" in actions[0].message.lower()


def test_moderate_adds_a_task_to_acknowledge_within_300_s() -> None:
    actions = plan_actions(alarm("moderate"), "moderate", T0, new_id=lambda: "K1")
    assert [type(a) for a in actions] == [CabAlert, OpenTask]
    task = actions[1].task  # type: ignore[union-attr]
    assert (task.id, task.alarm_id, task.severity, task.status) == ("K1", "A1", "moderate", "open")
    assert task.due_at == at(300) and task.next_escalation_at == at(300)
    assert not is_overdue(task, at(299)) and is_overdue(task, at(300))
    timer = EscalationTimer(POLICY, tasks=[task])
    assert timer.due(at(299)) == []
    assert targets(timer.due(at(300))) == [("shift_supervisor", 1)]  # overdue: supervisor told
    assert timer.due(at(10_000)) == []


def test_severe_adds_task_chain_and_insurer_record() -> None:
    actions = plan_actions(alarm("severe", "collision"), "severe", T0, new_id=lambda: "K1")
    assert [type(a) for a in actions] == [CabAlert, OpenTask, InsurerNotice]
    notice = actions[2]
    assert isinstance(notice, InsurerNotice)
    assert notice.payload["alarm_id"] == "A1" and notice.payload["severity"] == "severe"
    assert notice.payload["policy_version"] == POLICY.version
    json.dumps(dict(notice.payload))  # JSON-able as it is


def test_stale_replay_gets_no_cab_alert_but_the_dispatcher_still_hears() -> None:
    actions = plan_actions(alarm("severe"), "severe", T0, late=True)
    assert [type(a) for a in actions] == [OpenTask, InsurerNotice]


def test_a_silent_unit_gets_no_cab_alert_at_any_grade() -> None:
    """It cannot hear us; the dispatcher and (severe) the insurer hear of it as usual."""
    for severity, expected in (
        ("general", []),
        ("moderate", [OpenTask]),
        ("severe", [OpenTask, InsurerNotice]),
    ):
        actions = plan_actions(alarm(severity, "unit_silent"), severity, T0)
        assert [type(a) for a in actions] == expected, severity


def test_escalation_fires_at_the_right_times() -> None:
    clock = FakeClock()
    timer = EscalationTimer(POLICY, clock)
    timer.apply(plan_actions(alarm("severe"), "severe", T0, new_id=lambda: "K1"))
    assert targets(timer.due()) == [("shift_supervisor", 1)]  # at once
    assert timer.due() == []  # once
    clock.to(119)
    assert timer.due() == []
    assert timer.next_wakeup() == at(120)
    clock.to(120)
    step = timer.due()
    assert targets(step) == [("safety_manager", 2)] and step[0].due_at == at(120)
    assert not step[0].late
    clock.to(599)
    assert timer.due() == []
    clock.to(600)
    assert targets(timer.due()) == [("fleet_director", 3)]
    clock.to(86_400)
    assert timer.due() == [] and timer.next_wakeup() is None


def test_acknowledgement_stops_the_chain() -> None:
    clock = FakeClock()
    timer = EscalationTimer(POLICY, clock)
    timer.apply(plan_actions(alarm("severe"), "severe", T0, new_id=lambda: "K1"))
    assert targets(timer.due()) == [("shift_supervisor", 1)]
    clock.to(90)
    task = timer.acknowledge("K1", "dispatcher.li")
    assert task.status == "acknowledged" and task.acknowledged_at == at(90)
    assert task.next_escalation_at is None and not is_overdue(task, at(1000))
    clock.to(3600)
    assert timer.due() == []
    assert timer.acknowledge("K1", "dispatcher.wu").acknowledged_by == "dispatcher.li"


def test_a_rise_upgrades_the_open_tasks_chain() -> None:
    clock = FakeClock()
    timer = EscalationTimer(POLICY, clock)
    state = alarm("moderate")
    timer.apply(plan_actions(state, "moderate", T0, new_id=lambda: "K1"))
    clock.to(100)
    risen = occur(state, "severe", clock.now, reason="fatigue L2, 3rd in 30 min")
    actions = actions_for(risen, clock.now, new_id=lambda: "unused")
    assert [type(a) for a in actions] == [CabAlert, UpgradeTask, InsurerNotice]
    timer.apply(actions)
    task = timer.get("K1")
    assert task.severity == "severe" and task.chain_started_at == at(100)
    assert task.due_at == at(220)  # the severe deadline (100 + 120) is sooner than 300
    assert targets(timer.due()) == [("shift_supervisor", 1)]  # the severe chain, from the rise
    clock.to(219)
    assert timer.due() == []
    clock.to(220)
    assert targets(timer.due()) == [("safety_manager", 2)]
    # A repeat at the same or a lower grade triggers nothing.
    assert actions_for(occur(risen.state, "moderate", clock.now), clock.now) == []


def test_a_rise_reopens_an_acknowledged_task_and_a_cleared_alarm_stays_closed() -> None:
    clock = FakeClock()
    timer = EscalationTimer(POLICY, clock)
    timer.apply(plan_actions(alarm("moderate"), "moderate", T0, new_id=lambda: "K1"))
    clock.to(30)
    timer.acknowledge("K1", "dispatcher.li")
    clock.to(60)
    timer.upgrade("K1", "severe")
    task = timer.get("K1")
    assert task.status == "open" and task.acknowledged_by is None and task.due_at == at(180)
    assert targets(timer.due()) == [("shift_supervisor", 1)]
    timer.close("K1")
    clock.to(10_000)
    assert timer.due() == [] and timer.upgrade("K1", "severe").status == "closed"


def test_a_rise_from_general_opens_a_task() -> None:
    timer = EscalationTimer(POLICY, FakeClock())
    state = alarm("general")
    risen = occur(state, "moderate", at(50))
    timer.apply(actions_for(risen, at(50), new_id=lambda: "K9"))
    task = timer.for_alarm("A1")
    assert task is not None and task.id == "K9" and task.due_at == at(350)


def test_restart_fires_missed_steps_exactly_once() -> None:
    clock = FakeClock()
    timer = EscalationTimer(POLICY, clock)
    timer.apply(plan_actions(alarm("severe", alarm_id="A1"), "severe", T0, new_id=lambda: "K1"))
    timer.apply(plan_actions(alarm("moderate", alarm_id="A2"), "moderate", T0, new_id=lambda: "K2"))
    assert targets(timer.due()) == [("shift_supervisor", 1)]
    stored = json.dumps(timer.snapshot())  # what survives the crash

    # The server is down from t=10 s to t=15 min; a new one rebuilds from the store.
    clock.to(900)
    again = EscalationTimer.restore(json.loads(stored), POLICY, clock)
    fired = again.due()
    assert [(s.task_id, s.target, s.due_at) for s in fired] == [
        ("K1", "safety_manager", at(120)),
        ("K2", "shift_supervisor", at(300)),
        ("K1", "fleet_director", at(600)),
    ]
    assert all(s.late and s.fired_at == at(900) for s in fired)
    assert again.due() == []  # not twice
    # A second restart from a snapshot taken after firing fires nothing again.
    third = EscalationTimer.restore(json.loads(json.dumps(again.snapshot())), POLICY, clock)
    clock.to(5000)
    assert third.due() == []


def test_fire_due_is_pure_and_advances_the_level() -> None:
    task = new_task("A1", "V1", "severe", T0, POLICY, "K1")
    assert task is not None
    advanced, steps = fire_due(task, at(125), POLICY)
    assert targets(steps) == [("shift_supervisor", 1), ("safety_manager", 2)]
    assert advanced.escalation_level == 2 and advanced.next_escalation_at == at(600)
    assert task.escalation_level == 0  # unchanged
    assert fire_due(advanced, at(125), POLICY) == (advanced, [])


def test_writes_collect_what_the_writer_commits() -> None:
    writes = LifecycleWrites()
    assert not writes
    opened = open_alarm("A1", "V1", "phone_call", "phone_call", "severe", T0)
    writes.add_transition(opened)
    writes.add_actions(actions_for(opened, T0, new_id=lambda: "K1"))
    lapsed = occur(opened.state, "general", at(400), policy=POLICY.auto_clear, new_id=lambda: "A2")
    writes.add_transition(lapsed)
    writes.add_actions(actions_for(lapsed, at(400)))
    assert [(a.alarm_id, a.action) for a in writes.audit] == [("A1", "opened"), ("A2", "opened")]
    assert [t.id for t in writes.tasks] == ["K1"]
    assert [n.alarm_id for n in writes.insurer] == ["A1"]
    assert writes.clears == [ClearRequest("A1", at(300), "absent", "system", {"absent_s": 300.0})]
    kept = writes.keep({"A2"})
    assert [a.alarm_id for a in kept.audit] == ["A2"] and not kept.tasks and not kept.insurer
    assert kept.clears == writes.clears  # the lapsed alarm is an older one: always applied
