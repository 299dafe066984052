"""AlarmBook grouping within the cool-down and the severity → intervention policy."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from telematics.classify.alarms import AlarmCandidate
from telematics.classify.rules import Rules
from telematics.errors import UsageError
from telematics.intervene.policy import AlarmBook, intervention_for
from telematics.protocol.messages import DERIVED_KINDS, EVENT_KINDS, SEVERITIES

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
ALL_KINDS = sorted(EVENT_KINDS | DERIVED_KINDS)


def cand(
    t_s: float,
    severity: str = "general",
    kind: str = "fatigue",
    key: str | None = None,
    vehicle: str = "SU-E12345",
    tire_pos: str | None = None,
) -> AlarmCandidate:
    return AlarmCandidate(
        vehicle_id=vehicle,
        kind=kind,
        key=key or kind,
        severity=severity,
        reason=f"{kind} test",
        seq=int(t_s) + 1,
        ts=T0 + timedelta(seconds=t_s),
        derived=False,
        level=None,
        tire_pos=tire_pos,
        lat=31.3,
        lon=120.58,
        speed_kmh=60.0,
    )


def book(cooldown_s: float = 300.0) -> AlarmBook:
    ids = (f"id{n}" for n in itertools.count(1))
    return AlarmBook(Rules(cooldown_s=cooldown_s), new_id=lambda: next(ids))


def test_new_alarm_gets_id_and_intervention() -> None:
    d = book().decide(cand(0, "moderate"))
    assert (d.alarm_id, d.is_new, d.severity) == ("id1", True, "moderate")
    assert d.intervention is not None and d.intervention.action == "voice_alert"
    assert d.candidate.kind == "fatigue"


def test_default_ids_are_uuid_hex() -> None:
    a = AlarmBook(Rules()).decide(cand(0))
    b = AlarmBook(Rules()).decide(cand(0))
    assert len(a.alarm_id) == 32 and int(a.alarm_id, 16) >= 0 and a.alarm_id != b.alarm_id


def test_repeats_within_cooldown_are_grouped_and_last_occurrence_moves() -> None:
    b = book()
    assert b.decide(cand(0)).alarm_id == "id1"
    # Each repeat is within 300 s of the previous one, though 800 s pass in total.
    for t in (200, 400, 600, 800):
        d = b.decide(cand(t))
        assert (d.alarm_id, d.is_new, d.severity, d.intervention) == ("id1", False, "general", None)
    assert b.decide(cand(1100)).alarm_id == "id1"  # exactly the cool-down: still grouped
    d = b.decide(cand(1400.001))
    assert (d.alarm_id, d.is_new) == ("id2", True)
    assert d.intervention is not None


def test_new_alarm_after_cooldown() -> None:
    b = book(cooldown_s=60)
    b.decide(cand(0, "moderate"))
    d = b.decide(cand(61, "general"))
    assert (d.alarm_id, d.is_new, d.severity) == ("id2", True, "general")
    assert d.intervention is not None and d.intervention.action == "display"


def test_severity_rise_realerts_in_place() -> None:
    b = book()
    b.decide(cand(0, "general"))
    d = b.decide(cand(30, "moderate"))
    assert (d.alarm_id, d.is_new, d.severity) == ("id1", False, "moderate")
    assert d.intervention == intervention_for("fatigue", "moderate")
    d = b.decide(cand(60, "severe"))
    assert (d.alarm_id, d.severity) == ("id1", "severe")
    assert d.intervention is not None
    assert d.intervention.message == "Severe fatigue detected. Pull over at the next safe place."
    # A lower repeat keeps the risen severity and stays quiet.
    d = b.decide(cand(90, "moderate"))
    assert (d.alarm_id, d.severity, d.intervention) == ("id1", "severe", None)


def test_keys_are_independent() -> None:
    b = book()
    a = b.decide(cand(0, kind="tire_pressure_low", key="tire_pressure_low:1L", tire_pos="1L"))
    c = b.decide(cand(5, kind="tire_pressure_low", key="tire_pressure_low:1R", tire_pos="1R"))
    assert (a.alarm_id, c.alarm_id) == ("id1", "id2") and a.is_new and c.is_new
    assert c.intervention is not None and "tire 1R" in c.intervention.message


def test_restore_rebuilds_state_after_reconnect() -> None:
    b = book()
    b.restore("fatigue", "old-id", "moderate", T0)
    d = b.decide(cand(120, "moderate"))
    assert (d.alarm_id, d.is_new, d.intervention) == ("old-id", False, None)
    d = b.decide(cand(200, "severe"))
    assert (d.alarm_id, d.severity) == ("old-id", "severe") and d.intervention is not None
    # Cool-down counts from the restored last occurrence.
    b.restore("yawning", "stale", "general", T0 - timedelta(hours=1))
    assert b.decide(cand(0, kind="yawning")).alarm_id == "id1"
    with pytest.raises(UsageError):
        b.restore("fatigue", "x", "critical", T0)


def test_old_replayed_occurrence_does_not_displace_current_alarm() -> None:
    b = book()
    b.decide(cand(3600, "moderate"))
    old = b.decide(cand(0, "general"))  # an hour older: its own alarm
    assert (old.alarm_id, old.is_new) == ("id2", True)
    assert b.decide(cand(3700, "moderate")).alarm_id == "id1"
    # A slightly older occurrence (within the cool-down) is part of the current alarm.
    assert b.decide(cand(3500, "general")).alarm_id == "id1"


def test_one_book_per_vehicle() -> None:
    b = book()
    b.decide(cand(0))
    with pytest.raises(UsageError, match="one book per vehicle"):
        b.decide(cand(1, vehicle="SU-OTHER"))


def test_state_stays_bounded() -> None:
    b = book(cooldown_s=60)
    for i in range(5000):
        b.decide(cand(i * 10, key=f"fatigue:{i}"))
    assert len(b) <= AlarmBook.PRUNE_AT + 1


def test_live_keys_are_never_pruned() -> None:
    b = book(cooldown_s=10_000)
    for i in range(600):
        b.decide(cand(i, key=f"k{i}"))
    assert len(b) == 600
    assert b.decide(cand(700, key="k0")).alarm_id == "id1"


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_every_kind_and_severity_has_an_intervention(kind: str, severity: str) -> None:
    spec = intervention_for(kind, severity)
    assert spec.action == ("display" if severity == "general" else "voice_alert")
    assert spec.message.endswith(".") and "_" not in spec.message
    assert "Drive carefully" not in spec.message  # the fallback for unknown kinds


@pytest.mark.parametrize("severity", SEVERITIES)
def test_messages_are_specific_to_kind(severity: str) -> None:
    messages = [intervention_for(k, severity).message for k in ALL_KINDS]
    assert len(set(messages)) == len(messages)


def test_messages_escalate_with_severity() -> None:
    general, moderate, severe = (intervention_for("fatigue", s).message for s in SEVERITIES)
    assert len({general, moderate, severe}) == 3
    assert intervention_for("tire_fast_leak", "severe", "2LO").message.startswith(
        "Danger: fast air loss on tire 2LO"
    )
    assert intervention_for("collision", "severe").message.startswith("Collision detected.")


def test_unknown_kind_falls_back_and_unknown_severity_is_a_bug() -> None:
    assert intervention_for("new_kind", "moderate").message.startswith("New kind detected.")
    with pytest.raises(UsageError):
        intervention_for("fatigue", "critical")
