"""The cab messages of the interventions, per kind and severity."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from telematics.errors import UsageError
from telematics.intervene.policy import NO_CAB_KINDS, intervention_for
from telematics.protocol.messages import DERIVED_KINDS, EVENT_KINDS, SEVERITIES

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
#: The kinds the cab hears of (a silent unit cannot).
ALL_KINDS = sorted((EVENT_KINDS | DERIVED_KINDS) - NO_CAB_KINDS)


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
