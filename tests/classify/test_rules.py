"""Rules: validated tire thresholds and cool-down; event_key: the alarm key of a device event.

Severity is not here: it is policy.json's, graded by RulesGrader (see test_context.py).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from telematics.classify.risk_policy import load_policy
from telematics.classify.rules import Rules, event_key
from telematics.errors import ConfigError
from telematics.protocol.messages import EVENT_KINDS, TPMS_KINDS, DeviceEvent

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def event(kind: str, attrs: dict[str, Any] | None = None) -> DeviceEvent:
    return DeviceEvent(43, T0, kind, None, 31.2991, 120.586, 20.0, "D-0117", attrs, None)


# --- Rules ---------------------------------------------------------------------------


def test_defaults() -> None:
    rules = Rules()
    assert rules.version == "2026-11-v1"
    assert rules.cooldown_s == 300.0


def test_defaults_equal_the_packaged_policy_thresholds() -> None:
    # Rules() stands in for the policy where no policy is at hand (report's default gap):
    # its numbers must not drift from policy.json's.
    from_policy = load_policy(None).tire_rules()
    assert dataclasses.replace(from_policy, version=Rules().version) == Rules()


def test_accepts_whole_numbers_and_is_frozen() -> None:
    rules = Rules(version="fleet-7", cooldown_s=120, high_temp_c=75)
    assert (rules.version, rules.cooldown_s, rules.high_temp_c) == ("fleet-7", 120, 75)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.cooldown_s = 5.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"version": ""}, "version: must be a non-empty string"),
        ({"version": 7}, "version: must be a non-empty string"),
        ({"cooldown_s": "5 min"}, "cooldown_s: must be a number"),
        ({"cooldown_s": True}, "cooldown_s: must be a number"),
        ({"cooldown_s": None}, "cooldown_s: must be a number"),
        ({"cooldown_s": -1}, "cooldown_s: must be a finite number ≥ 0"),
        ({"high_temp_c": float("nan")}, "high_temp_c: must be a finite number ≥ 0"),
        ({"leak_window_s": float("inf")}, "leak_window_s: must be a finite number ≥ 0"),
        ({"high_temp_c": 120}, "need high_temp_c < severe_temp_c"),
        ({"low_pressure_moderate_ratio": 0.9}, "low_pressure_moderate_ratio < low_pressure_ratio"),
        ({"low_pressure_moderate_ratio": 0}, "need 0 < low_pressure_moderate_ratio"),
        ({"low_pressure_ratio": 1.0}, "low_pressure_ratio < 1"),
        ({"high_pressure_ratio": 1.0}, "high_pressure_ratio: must be > 1"),
        ({"slow_leak_kpa_per_min": 0}, "slow_leak_kpa_per_min: must be > 0"),
        ({"fast_leak_kpa_per_min": 1.0}, "need fast_leak_kpa_per_min > slow_leak_kpa_per_min"),
        ({"slow_leak_min_span_s": 0}, "need 0 < slow_leak_min_span_s <= leak_window_s"),
        ({"slow_leak_min_span_s": 601}, "need 0 < slow_leak_min_span_s <= leak_window_s"),
        ({"fast_leak_window_s": 9}, "need 10 <= fast_leak_window_s <= leak_window_s"),
        ({"fast_leak_window_s": 700}, "need 10 <= fast_leak_window_s <= leak_window_s"),
        ({"clear_margin": 0.5}, "clear_margin: must be < 0.5"),
    ],
)
def test_rejects_bad_thresholds(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Rules(**changes)
    assert fragment in str(info.value)


# --- event_key -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
def test_key_without_a_position_is_the_kind(kind: str) -> None:
    assert event_key(event(kind)) == (kind, None)
    assert event_key(event(kind, {})) == (kind, None)


def test_tpms_key_uses_string_pos() -> None:
    for kind in TPMS_KINDS:
        assert event_key(event(kind, {"pos": "2LO"})) == (f"{kind}:2LO", "2LO")
        assert event_key(event(kind, {"pos": "12R"})) == (f"{kind}:12R", "12R")
    assert event_key(event("tire_pressure_low", {"pos": 3})) == ("tire_pressure_low", None)
    junk = event("tire_pressure_low", {"pos": "x" * 500})
    assert event_key(junk) == ("tire_pressure_low", None)
    # The decoder's position shape: 1–99, L/R, optional O/I, nothing after.
    for bad in ("0L", "1X", "1LOO", "1L\n", "L1", ""):
        assert event_key(event("tire_pressure_low", {"pos": bad}))[1] is None, bad
    # pos on a non-TPMS kind is not part of the key.
    assert event_key(event("fatigue", {"pos": "1L"})) == ("fatigue", None)
