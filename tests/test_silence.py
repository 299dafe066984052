"""The unit_silent decision, pure: timelines of contacts under a controllable clock.

``Fleet`` stands in for the database: it keeps each unit's contact and applies every
plan the way ``store/silence.py`` does (an opened alarm is the unit's open alarm, a clear
closes it), so a test is a sequence of "heard at", "fix" and "timer looks at t".
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from telematics.classify.risk_policy import RiskPolicy, SilencePolicy, load_policy
from telematics.intervene.escalation import InsurerNotice
from telematics.intervene.escalation import load_policy as load_escalation
from telematics.intervene.lifecycle import SYSTEM
from telematics.silence import KIND, SilencePlan, UnitContact, plan_silence

T0 = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # 14:00 in Suzhou: not night
POLICY = load_policy()
ESCALATION = load_escalation()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Fleet:
    def __init__(self, up_since: float = 0.0, policy: RiskPolicy = POLICY) -> None:
        self.units: dict[str, UnitContact] = {}
        self.up_since = at(up_since)
        self.policy = policy
        self.ids = (f"A{i}" for i in itertools.count(1))

    def add(self, vehicle_id: str, vehicle_class: str = "coach") -> None:
        self.units[vehicle_id] = UnitContact(vehicle_id, vehicle_class, None, 0, None)

    def heard(
        self, vehicle_id: str, t: float, speed: float | None = None, fix_t: float = -1
    ) -> None:
        """An item arrived at ``t`` (a fix at ``speed``, timed ``fix_t`` by the unit's
        clock, ``t`` by default; None: not a fix) or, with no speed, a reconnect."""
        u = self.units[vehicle_id]
        u = replace(u, heard_at=at(t), last_seq=u.last_seq + 1)
        if speed is not None:
            fix = at(t if fix_t < 0 else fix_t)
            if u.fix_ts is None or fix > u.fix_ts:  # the newest fix by its own time
                u = replace(u, fix_ts=fix, lat=31.3, lon=120.6, speed_kmh=speed)
        self.units[vehicle_id] = u

    def tick(self, t: float) -> SilencePlan:
        plan = plan_silence(
            list(self.units.values()),
            at(t),
            self.up_since,
            self.policy,
            ESCALATION,
            new_id=lambda: next(self.ids),
        )
        for o in plan.opened:
            u = self.units[o.alarm.vehicle_id]
            self.units[u.vehicle_id] = replace(
                u, open_alarm=o.alarm, last_opened_at=o.alarm.opened_at
            )
        for c in plan.lifecycle.clears:
            for u in self.units.values():
                if u.open_alarm is not None and u.open_alarm.id == c.alarm_id:
                    self.units[u.vehicle_id] = replace(u, open_alarm=None)
        return plan

    def cleared_by_hand(self, vehicle_id: str) -> None:
        self.units[vehicle_id] = replace(self.units[vehicle_id], open_alarm=None)

    def open_ids(self) -> set[str]:
        return {u.vehicle_id for u in self.units.values() if u.open_alarm is not None}


def test_a_unit_silent_while_moving_gets_one_alarm_that_clears_when_heard() -> None:
    fleet = Fleet()
    fleet.add("SU-1")
    for t in range(0, 60):
        fleet.heard("SU-1", t, speed=87.0)  # streaming at 1 Hz, then nothing after t=59
    assert not fleet.tick(59 + 299).opened
    plan = fleet.tick(59 + 300)
    [silent] = plan.opened
    alarm = silent.alarm
    assert (alarm.kind, alarm.key, alarm.severity, alarm.derived) == (KIND, KIND, "moderate", True)
    assert alarm.reason == "unit silent 5 min, last seen at 87 km/h, coach"
    assert alarm.opened_at == at(59 + 300)  # when it fell due
    assert (silent.seq, silent.speed_kmh, silent.rules_version) == (60, 87.0, POLICY.version)
    writes = plan.lifecycle
    assert [(e.action, e.actor) for e in writes.audit] == [("opened", SYSTEM)]
    assert [(t.alarm_id, t.severity) for t in writes.tasks] == [(alarm.id, "moderate")]
    assert writes.insurer == [] and writes.clears == []
    # still silent: nothing more, however often and however late the timer looks
    for t in (400, 1000, 86_400):
        later = fleet.tick(t)
        assert not later.opened and not later.lifecycle
    fleet.heard("SU-1", 90_000)  # a reconnect
    plan = fleet.tick(90_001)
    [clear] = plan.lifecycle.clears
    assert (clear.alarm_id, clear.at, clear.reason, clear.actor) == (
        alarm.id,
        at(90_000),
        "unit_heard",
        SYSTEM,
    )
    assert fleet.open_ids() == set()


def test_the_timer_looking_late_opens_the_same_alarm() -> None:
    fleet = Fleet()
    fleet.add("SU-1")
    fleet.heard("SU-1", 0, speed=50.0)
    [silent] = fleet.tick(3600).opened
    assert silent.alarm.opened_at == at(300)
    assert silent.alarm.reason.startswith("unit silent 60 min")  # as long as it really is


def test_a_parked_vehicle_going_quiet_is_the_end_of_a_shift() -> None:
    fleet = Fleet()
    for vid, speed in (("SU-STOP", 0.0), ("SU-CRAWL", 9.9), ("SU-MOVE", 10.0)):
        fleet.add(vid)
        fleet.heard(vid, 0, speed=50.0)
        fleet.heard(vid, 10, speed=speed)
    fleet.tick(10_000)
    assert fleet.open_ids() == {"SU-MOVE"}  # the threshold itself counts as moving


def test_hazmat_is_severe_and_the_insurer_hears_of_it() -> None:
    fleet = Fleet()
    fleet.add("SU-H", "hazmat")
    fleet.heard("SU-H", 0, speed=87.0)
    plan = fleet.tick(360)
    [silent] = plan.opened
    assert silent.alarm.severity == "severe"
    assert silent.alarm.reason == "unit silent 6 min, last seen at 87 km/h, hazmat"
    [notice] = plan.lifecycle.insurer
    assert isinstance(notice, InsurerNotice) and notice.payload["kind"] == KIND
    assert plan.lifecycle.tasks[0].severity == "severe"


def test_silence_before_the_server_was_up_does_not_count() -> None:
    """Down from t=100 to t=1000: units last heard before that are not alarmed however
    long they stay away (they may well have parked meanwhile); units heard since are."""
    fleet = Fleet(up_since=1000)
    fleet.add("SU-GONE")
    fleet.heard("SU-GONE", 90, speed=80.0)
    fleet.add("SU-BACK")
    fleet.heard("SU-BACK", 90, speed=80.0)
    fleet.heard("SU-BACK", 1010, speed=80.0)  # came back after the restart, then silent
    assert fleet.tick(1200).opened == []
    assert [o.alarm.vehicle_id for o in fleet.tick(1310).opened] == ["SU-BACK"]
    assert fleet.tick(100_000).opened == []
    assert fleet.open_ids() == {"SU-BACK"}


def test_cleared_by_hand_while_still_silent_is_not_raised_again() -> None:
    fleet = Fleet()
    fleet.add("SU-1")
    fleet.heard("SU-1", 0, speed=80.0)
    [first] = fleet.tick(300).opened
    fleet.cleared_by_hand("SU-1")  # a dispatcher phoned the driver: all is well
    assert fleet.tick(5000).opened == []
    fleet.heard("SU-1", 6000, speed=80.0)  # back, driving, and silent once more
    assert fleet.tick(6299).opened == []
    [again] = fleet.tick(6300).opened
    assert again.alarm.id != first.alarm.id


def test_replayed_items_from_the_gap_clear_it_and_do_not_raise_it_again() -> None:
    """Out of coverage from t=0: the unit kept recording (fixes up to t=500, its clock)
    and replays them on its return at t=700; the timestamps are old, the news is not."""
    fleet = Fleet()
    fleet.add("SU-1")
    fleet.heard("SU-1", 0, speed=80.0)
    assert len(fleet.tick(300).opened) == 1
    for i, fix_t in enumerate(range(1, 501, 50)):
        fleet.heard("SU-1", 700 + i * 0.01, speed=80.0, fix_t=fix_t)
    plan = fleet.tick(701)
    assert len(plan.lifecycle.clears) == 1 and plan.opened == []
    assert fleet.tick(900).opened == []  # 200 s after the replay: not silent yet


def test_a_fix_much_older_than_the_last_contact_says_nothing_about_now() -> None:
    """Only events since a fix at 80 km/h an hour ago (a dead GNSS): no alarm."""
    fleet = Fleet()
    fleet.add("SU-1")
    fleet.heard("SU-1", 0, speed=80.0)
    fleet.heard("SU-1", 3600)  # an event (or a reconnect), no fix
    assert fleet.tick(3600 + 400).opened == []


def test_never_heard_is_not_silent() -> None:
    fleet = Fleet()
    fleet.add("SU-NEW")
    assert fleet.tick(100_000).opened == []


def test_the_policy_sets_the_silence_and_the_speed() -> None:
    policy = replace(
        POLICY, silence=SilencePolicy(silent_after_s=60, moving_kmh=30, severe_classes=frozenset())
    )
    fleet = Fleet(policy=policy)
    fleet.add("SU-H", "hazmat")
    fleet.add("SU-SLOW")
    fleet.heard("SU-H", 0, speed=40.0)
    fleet.heard("SU-SLOW", 0, speed=25.0)
    assert fleet.tick(59).opened == []
    [silent] = fleet.tick(60).opened
    assert (silent.alarm.vehicle_id, silent.alarm.severity) == ("SU-H", "moderate")
