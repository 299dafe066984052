"""The rules table: default grading of every event kind, the speed rule, loading overrides."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from telematics.classify.alarms import SEVERITY_RANK
from telematics.classify.rules import (
    DEFAULT_EVENT_RULES,
    EventRule,
    Rules,
    grade_event,
    load_rules,
)
from telematics.errors import ConfigError
from telematics.fleet import Vehicle
from telematics.protocol.messages import (
    ADAS_KINDS,
    DSM_KINDS,
    EVENT_KINDS,
    SEVERITIES,
    TPMS_KINDS,
    DeviceEvent,
)

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
COACH = Vehicle("SU-E12345", "F-1", "coach", "苏E12345", ("1L", "1R"), 850.0)

G, M, S = "general", "moderate", "severe"
# kind → (severity at level 1 / no level, at level 2), both below every speed threshold.
EXPECTED: dict[str, tuple[str, str]] = {
    "collision": (S, S),
    "rollover": (S, S),
    "panic_button": (S, S),
    "fatigue": (M, M),
    "phone_call": (M, M),
    "driver_absent": (M, M),
    "forward_collision": (M, M),
    "pedestrian_collision": (M, M),
    "tire_temp_high": (M, M),
    "tire_fast_leak": (M, M),
    "distraction": (G, M),
    "lane_departure": (G, M),
    "headway_too_close": (G, M),
    "smoking": (G, M),
    "yawning": (G, G),
    "frequent_lane_change": (G, G),
    "road_sign_overspeed": (G, G),
    "obstacle": (G, G),
    "blind_spot_left": (G, G),
    "blind_spot_right": (G, G),
    "blind_spot_rear": (G, G),
    "harsh_brake": (G, G),
    "harsh_accel": (G, G),
    "harsh_turn": (G, G),
    "overspeed": (G, G),
    "seatbelt_off": (G, G),
    "camera_blocked": (G, G),
    "tire_pressure_high": (G, G),
    "tire_pressure_low": (G, G),
    "tire_sensor_fault": (G, G),
}


def event(
    kind: str,
    level: int | None = None,
    speed: float = 20.0,
    attrs: dict[str, Any] | None = None,
    seq: int = 43,
) -> DeviceEvent:
    return DeviceEvent(seq, T0, kind, level, 31.2991, 120.586, speed, "D-0117", attrs, None)


def test_expected_table_covers_every_kind() -> None:
    assert set(EXPECTED) == EVENT_KINDS == set(DEFAULT_EVENT_RULES)


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
@pytest.mark.parametrize("level", [None, 1, 2])
def test_every_kind_gets_default_severity_and_reason(kind: str, level: int | None) -> None:
    c = grade_event(event(kind, level), COACH, Rules())
    l1, l2 = EXPECTED[kind]
    assert c.severity == (l2 if level == 2 else l1)
    assert c.severity in SEVERITIES
    assert c.reason.strip()
    assert c.kind == kind and c.key == kind
    assert c.level == level and not c.derived and c.tire_pos is None
    assert (c.vehicle_id, c.seq, c.ts, c.lat, c.lon, c.speed_kmh) == (
        "SU-E12345",
        43,
        T0,
        31.2991,
        120.586,
        20.0,
    )


def test_severe_only_for_crash_rollover_panic() -> None:
    severe = {k for k, r in DEFAULT_EVENT_RULES.items() if S in (r.level1, r.level2)}
    assert severe == {"collision", "rollover", "panic_button"}


@pytest.mark.parametrize("kind", sorted(DSM_KINDS + ADAS_KINDS))
def test_speed_rule_level2_at_graded_speed_is_at_least_moderate(kind: str) -> None:
    rules = Rules()
    below = grade_event(event(kind, 2, speed=49.9), COACH, rules)
    at = grade_event(event(kind, 2, speed=50.0), COACH, rules)
    assert below.severity == EXPECTED[kind][1]
    assert SEVERITY_RANK[at.severity] >= SEVERITY_RANK[M]
    # Level 1 is never raised by speed.
    assert grade_event(event(kind, 1, speed=120.0), COACH, rules).severity == EXPECTED[kind][0]


@pytest.mark.parametrize(
    "kind", ["harsh_brake", "overspeed", "blind_spot_left", "tire_sensor_fault"]
)
def test_speed_rule_is_only_for_dsm_and_adas(kind: str) -> None:
    assert grade_event(event(kind, 2, speed=110.0), COACH, Rules()).severity == G


def test_speed_rule_uses_configured_threshold() -> None:
    rules = Rules(graded_speed_kmh=80.0)
    assert grade_event(event("yawning", 2, speed=70.0), COACH, rules).severity == G
    assert grade_event(event("yawning", 2, speed=80.0), COACH, rules).severity == M


def test_device_fast_leak_is_severe_at_speed() -> None:
    rules = Rules()
    assert grade_event(event("tire_fast_leak", speed=59.9), COACH, rules).severity == M
    assert grade_event(event("tire_fast_leak", speed=60.0), COACH, rules).severity == S


def test_tpms_key_uses_string_pos() -> None:
    rules = Rules()
    for kind in TPMS_KINDS:
        c = grade_event(event(kind, attrs={"pos": "2LO"}), COACH, rules)
        assert (c.key, c.tire_pos) == (f"{kind}:2LO", "2LO")
    no_pos = grade_event(event("tire_pressure_low", attrs={"pos": 3}), COACH, rules)
    assert (no_pos.key, no_pos.tire_pos) == ("tire_pressure_low", None)
    junk = grade_event(event("tire_pressure_low", attrs={"pos": "x" * 500}), COACH, rules)
    assert junk.key == "tire_pressure_low"
    # pos on a non-TPMS kind is not part of the key.
    assert grade_event(event("fatigue", attrs={"pos": "1L"}), COACH, rules).key == "fatigue"


@pytest.mark.parametrize(
    ("ev", "reason"),
    [
        (event("fatigue", 2, 94.0), "fatigue L2 at 94 km/h"),
        (event("phone_call", 1, 62.0), "phone call L1 at 62 km/h"),
        (event("collision", None, 41.0), "collision reported by unit at 41 km/h"),
        (
            event("tire_fast_leak", None, 88.0, {"pos": "1L"}),
            "tire fast leak on 1L reported by unit at 88 km/h",
        ),
    ],
)
def test_reasons_are_dispatcher_readable(ev: DeviceEvent, reason: str) -> None:
    assert grade_event(ev, COACH, Rules()).reason == reason


# --- loading -------------------------------------------------------------------------


def write(tmp_path: Path, data: Any) -> str:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_load_none_is_defaults() -> None:
    assert load_rules(None) == Rules()
    assert Rules().version == "2026-11-v1"


def test_load_overrides_fields_and_merges_events(tmp_path: Path) -> None:
    rules = load_rules(
        write(
            tmp_path,
            {
                "version": "fleet-7",
                "cooldown_s": 120,
                "high_temp_c": 75.5,
                "events": {
                    "yawning": "moderate",
                    "smoking": {"level2": "severe"},
                    "overspeed": {"level1": "moderate", "level2": "severe"},
                },
            },
        )
    )
    assert rules.version == "fleet-7"
    assert rules.cooldown_s == 120.0 and isinstance(rules.cooldown_s, float)
    assert rules.high_temp_c == 75.5
    assert rules.low_pressure_ratio == Rules().low_pressure_ratio
    assert rules.events["yawning"] == EventRule(M, M)
    assert rules.events["smoking"] == EventRule(G, S)  # level1 kept from defaults
    assert rules.events["overspeed"] == EventRule(M, S)
    assert rules.events["fatigue"] == DEFAULT_EVENT_RULES["fatigue"]
    assert set(rules.events) == EVENT_KINDS
    assert grade_event(event("smoking", 2), COACH, rules).severity == S


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"cooldown": 10}, "unknown setting(s) cooldown"),
        ({"events": {"sneezing": "general"}}, "unknown kind 'sneezing'"),
        ({"events": {"fatigue": "critical"}}, "events.fatigue: level1: 'critical'"),
        ({"events": {"fatigue": {"level3": "severe"}}}, "events.fatigue: unknown key(s) level3"),
        ({"events": {"fatigue": 2}}, "events.fatigue: must be a severity or an object"),
        ({"events": ["fatigue"]}, "events: must be an object"),
        ({"events": {"smoking": {"level1": "severe"}}}, "less severe than level1"),
        ({"cooldown_s": "5 min"}, "cooldown_s: must be a number"),
        ({"cooldown_s": True}, "cooldown_s: must be a number"),
        ({"cooldown_s": -1}, "cooldown_s: must be a finite number ≥ 0"),
        ({"high_temp_c": 120}, "need high_temp_c < severe_temp_c"),
        ({"low_pressure_moderate_ratio": 0.9}, "low_pressure_moderate_ratio < low_pressure_ratio"),
        ({"version": ""}, "version: must be a non-empty string"),
        ([1, 2], "top level must be a JSON object"),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, data: Any, fragment: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert fragment in str(info.value)
    assert path in str(info.value)


def test_load_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(str(tmp_path / "nope.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_rules(str(broken))


def test_rules_need_every_kind_and_are_frozen() -> None:
    partial = {k: v for k, v in DEFAULT_EVENT_RULES.items() if k != "rollover"}
    with pytest.raises(ConfigError, match=r"no rule for kind.*rollover"):
        Rules(events=partial)
    mine = dict(DEFAULT_EVENT_RULES)
    rules = Rules(events=mine)
    mine["fatigue"] = EventRule(S, S)  # the caller's dict must not leak into frozen rules
    assert rules.events["fatigue"] == EventRule(M, M)
    with pytest.raises(ConfigError, match="is not a severity"):
        EventRule("low", "high")
