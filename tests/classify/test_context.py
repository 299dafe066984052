"""The context grader: every severity rule and factor, the reason text, the policy file."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from telematics.classify.context import (
    Graded,
    Grader,
    GradingInput,
    RulesGrader,
    grade,
    load_policy,
)
from telematics.classify.risk_policy import GRADED_KINDS, RiskPolicy, policy_from
from telematics.classify.rules import Rules
from telematics.errors import ConfigError, UsageError
from telematics.fleet import CLASS_PROFILES, Vehicle
from telematics.protocol.messages import SEVERITIES, DeviceEvent
from telematics.state.vehicle import VehicleState

POLICY = load_policy()
DAY = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00 in Suzhou
ALWAYS = ("collision", "rollover", "panic_button")


def x(kind: str = "fatigue", level: int | None = 1, **kw: Any) -> GradingInput:
    """A calm baseline: a bus at 40 km/h by day, first occurrence, no zone, fresh driver."""
    base: dict[str, Any] = {
        "kind": kind,
        "level": level,
        "ts": DAY,
        "speed_kmh": 40.0,
        "speed_limit_kmh": 80.0,
        "vehicle_class": "bus",
        "load": "unknown",
        "night": False,
        "zone_kinds": frozenset(),
        "recurrence": 1,
        "continuous_driving_s": 0.0,
        "driving_today_s": 0.0,
    }
    return GradingInput(**(base | kw))


def g(policy: RiskPolicy = POLICY, **kw: Any) -> Graded:
    return RulesGrader(policy).grade_one(x(**kw))


# ---- base table and thresholds ----


def test_every_kind_has_a_base_severity_that_grades_as_itself_in_a_calm_context() -> None:
    for kind in sorted(GRADED_KINDS):
        l1, l2 = POLICY.severity.events[kind]
        assert g(kind=kind, level=1).severity == l1, kind
        assert g(kind=kind, level=2).severity == l2, kind
        assert g(kind=kind, level=None).severity == l1, kind


def test_default_table_highlights() -> None:
    ev = POLICY.severity.events
    assert ev["fatigue"] == ("moderate", "moderate")
    assert ev["distraction"] == ("general", "moderate")
    assert ev["lane_departure"] == ("general", "general")  # context, not the level, decides
    assert ev["driving_time"] == ("moderate", "moderate")
    assert ev["tire_imbalance"] == ("general", "general")


@pytest.mark.parametrize("kind", ALWAYS)
def test_crash_rollover_panic_are_severe_even_in_the_calmest_context(kind: str) -> None:
    calm = g(kind=kind, level=None, speed_kmh=0.0, zone_kinds=frozenset({"depot"}))
    assert calm.severity == "severe"
    assert calm.score < POLICY.severity.severe_at  # the rule, not the points, made it severe


def test_always_severe_holds_even_if_the_table_says_otherwise() -> None:
    sp = POLICY.severity
    events = dict(sp.events) | {"panic_button": ("general", "general")}
    policy = replace(POLICY, severity=replace(sp, events=events))
    assert g(policy, kind="panic_button").severity == "severe"


def test_thresholds_map_the_score() -> None:
    # general base 0: + 50 of context makes it moderate, +100 severe.
    assert g(kind="yawning", speed_kmh=105.0, vehicle_class="hazmat").score == 0 + 20 + 10 + 15
    assert g(kind="yawning", speed_kmh=105.0, vehicle_class="hazmat").severity == "general"
    assert g(kind="yawning", speed_kmh=105, vehicle_class="hazmat", night=True).severity == (
        "moderate"
    )  # 55
    assert g(kind="fatigue", speed_kmh=105, vehicle_class="hazmat", night=True).severity == (
        "severe"
    )  # 105


def test_unknown_kind_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no severity for kind 'teleport'"):
        g(kind="teleport")


# ---- each context factor ----


@pytest.mark.parametrize(
    ("speed", "points"),
    [(0.0, -15), (19.9, -15), (20.0, 0), (59.9, 0), (60.0, 5), (80.0, 10), (100.0, 20)],
)
def test_speed_bands(speed: float, points: float) -> None:
    assert g(kind="fatigue", speed_kmh=speed, speed_limit_kmh=None).score == 50 + points


def test_crawling_lowers_a_table_severity() -> None:
    assert g(kind="fatigue", speed_kmh=10.0).severity == "general"  # 50 − 15


def test_over_the_limit_in_force() -> None:
    at = g(kind="fatigue", speed_kmh=95.0, speed_limit_kmh=80.0)
    assert at.score == 50 + 10 + 10
    assert at.reason == "fatigue L1 at 95 km/h, over the 80 km/h limit"
    within_tolerance = g(kind="fatigue", speed_kmh=85.0, speed_limit_kmh=80.0)
    assert within_tolerance.score == 50 + 10
    # An overspeed alarm is about exactly that: the factor is not counted twice.
    assert g(kind="overspeed", speed_kmh=95.0, speed_limit_kmh=80.0).score == 0 + 10


@pytest.mark.parametrize(
    ("cls", "points"), [("coach", 10), ("bus", 0), ("hazmat", 15), ("freight", 0)]
)
def test_vehicle_class(cls: str, points: float) -> None:
    got = g(kind="fatigue", vehicle_class=cls)
    assert got.score == 50 + points
    assert (cls in got.reason) is (points > 0)


@pytest.mark.parametrize(
    ("load", "points"), [("full", 5), ("half", 0), ("empty", 0), ("unknown", 0)]
)
def test_load(load: str, points: float) -> None:
    got = g(kind="fatigue", vehicle_class="freight", load=load)
    assert got.score == 50 + points
    assert ("full load" in got.reason) is (load == "full")


def test_night() -> None:
    got = g(kind="yawning", night=True)
    assert (got.score, got.reason) == (10, "yawning L1 at 40 km/h, night")


@pytest.mark.parametrize(
    ("zone", "points", "label"),
    [
        ("school", 20, "school zone"),
        ("tunnel", 15, "tunnel"),
        ("flood_prone", 10, "flood-prone area"),
        ("depot", -10, None),
        ("speed_limit", 0, None),
    ],
)
def test_zones(zone: str, points: float, label: str | None) -> None:
    got = g(kind="distraction", zone_kinds=frozenset({zone}))
    assert got.score == points
    assert got.reason == "distraction L1 at 40 km/h" + (f", {label}" if label else "")


def test_only_the_worst_zone_counts() -> None:
    got = g(kind="distraction", zone_kinds=frozenset({"school", "tunnel", "speed_limit"}))
    assert (got.score, got.reason) == (20, "distraction L1 at 40 km/h, school zone")


def test_hazmat_restricted_zone_weighs_on_hazmat_only() -> None:
    zones = frozenset({"hazmat_restricted"})
    assert g(kind="distraction", vehicle_class="hazmat", zone_kinds=zones).score == 15 + 25
    assert g(kind="distraction", vehicle_class="bus", zone_kinds=zones).score == 0


@pytest.mark.parametrize(
    ("n", "points", "text"),
    [(1, 0, None), (2, 5, "2nd"), (3, 15, "3rd"), (4, 25, "4th"), (5, 30, "5th"), (11, 30, "11th")],
)
def test_recurrence_in_the_last_30_minutes(n: int, points: float, text: str | None) -> None:
    got = g(kind="phone_call", recurrence=n)
    assert got.score == 50 + points
    assert got.reason == "phone call L1 at 40 km/h" + (f", {text} in 30 min" if text else "")


@pytest.mark.parametrize(("hours", "points"), [(0.0, 0), (1.9, 0), (2.0, 5), (3.0, 10), (4.5, 20)])
def test_continuous_driving(hours: float, points: float) -> None:
    got = g(kind="yawning", continuous_driving_s=hours * 3600)
    assert got.score == points
    assert ("without a break" in got.reason) is (points > 0)


def test_driving_time_alarm_does_not_count_its_own_hours_twice() -> None:
    got = g(kind="driving_time", level=None, continuous_driving_s=4.5 * 3600)
    assert got.score == 50


def test_a_detector_severity_replaces_the_table_and_is_a_floor() -> None:
    hot = g(
        kind="tire_temp_high", level=None, base="severe", speed_kmh=5.0, detail="tire 1L 104 °C"
    )
    assert hot.severity == "severe" and hot.score == 100 - 15
    low = g(kind="tire_pressure_low", level=None, base="moderate", speed_kmh=70.0)
    assert low.severity == "moderate" and low.score == 50 + 5  # the table says general
    risen = g(
        kind="tire_pressure_low",
        level=None,
        base="moderate",
        speed_kmh=100.0,  # over the bus's 80 km/h
        vehicle_class="hazmat",
        night=True,
    )
    assert (risen.severity, risen.score) == ("severe", 50 + 20 + 10 + 15 + 10)


# ---- reason text ----


def test_the_dispatcher_reason_lists_what_made_it_worse_in_order() -> None:
    got = g(
        kind="fatigue",
        level=2,
        speed_kmh=94.0,
        speed_limit_kmh=100.0,
        vehicle_class="hazmat",
        night=True,
        recurrence=3,
    )
    assert got.reason == "fatigue L2 at 94 km/h, 3rd in 30 min, hazmat, night"
    assert got.severity == "severe"  # 50 + 10 + 15 + 15 + 10


def test_the_issue_examples() -> None:
    tanker = g(
        kind="fatigue",
        level=2,
        speed_kmh=95.0,
        vehicle_class="hazmat",
        load="full",
        night=True,
    )
    assert tanker.severity == "severe"
    assert tanker.reason == (
        "fatigue L2 at 95 km/h, over the 80 km/h limit, hazmat, full load, night"
    )
    yawn = g(kind="yawning", speed_kmh=6.0, zone_kinds=frozenset({"depot"}))
    assert (yawn.severity, yawn.reason) == ("general", "yawning L1 at 6 km/h")


def test_reason_with_a_detail_and_without_a_level() -> None:
    got = g(kind="tire_pressure_low", level=None, detail="tire 2LO 598 kPa", night=True)
    assert got.reason == "tire 2LO 598 kPa at 40 km/h, night"
    unit = g(kind="panic_button", level=None)
    assert unit.reason == "panic button at 40 km/h"
    with_speed = g(kind="harsh_brake", detail="harsh brake L1 −3.3 m/s², 60→48 km/h in 1 s")
    assert with_speed.reason == "harsh brake L1 −3.3 m/s², 60→48 km/h in 1 s"


# ---- the Grader seam and grade() ----


def test_rules_grader_is_a_grader_and_keeps_batch_order() -> None:
    grader: Grader = RulesGrader(POLICY)
    assert grader.version == POLICY.version
    out = grader.grade_many([x("yawning"), x("collision"), x("fatigue")])
    assert [o.severity for o in out] == ["general", "severe", "moderate"]


def test_grade_reads_a_vehicle_state() -> None:
    p = CLASS_PROFILES["coach"]
    state = VehicleState(Vehicle("V", "F", "coach", None, p.tire_layout, p.placard_kpa), POLICY)
    night = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)  # 02:00 local
    for i in range(2):
        e = DeviceEvent(i, night, "fatigue", 1, 31.3, 120.6, 90.0, None, None, None)
        state.observe_event(replace(e, ts=night.replace(minute=10 * i)))
    sev, reason = grade("fatigue", 2, state, night.replace(minute=15), 90.0)
    assert reason == "fatigue L2 at 90 km/h, 2nd in 30 min, coach, night"
    assert sev == "moderate"  # 50 + 10 + 5 + 10 + 10 = 85


# ---- the policy file ----


def test_packaged_policy_loads_and_is_complete() -> None:
    p = load_policy(None)
    assert p.version == "2026-12-risk-v1"
    assert set(p.severity.events) == GRADED_KINDS
    assert p.imbalance_ratio == 0.2
    assert p.severity.always_severe == frozenset(ALWAYS)
    rules = p.tire_rules()
    assert isinstance(rules, Rules) and rules.version == p.version and rules.cooldown_s == 300
    assert p.dynamics.harsh_brake_mps2 == {"coach": 3.0, "bus": 3.0, "hazmat": 2.5, "freight": 3.0}
    assert p.overspeed.road_limit_kmh == {"coach": 100, "bus": 80, "hazmat": 80, "freight": 100}
    assert (p.driving.continuous_limit_s, p.driving.night_limit_s) == (14400, 7200)


def write(tmp_path: Path, data: Any, name: str = "policy.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_a_custom_file_overrides_parts_and_keeps_the_rest(tmp_path: Path) -> None:
    p = load_policy(
        write(
            tmp_path,
            {
                "version": "fleet-7",
                "severity": {"night_points": 25, "events": {"yawning": ["general", "moderate"]}},
                "dynamics": {"harsh_brake_mps2": {"hazmat": 2.0}},
            },
        )
    )
    assert p.version == "fleet-7"
    assert p.severity.night_points == 25
    assert p.severity.events["yawning"] == ("general", "moderate")
    assert p.severity.events["fatigue"] == ("moderate", "moderate")  # untouched
    assert p.dynamics.harsh_brake_mps2["hazmat"] == 2.0
    assert p.dynamics.harsh_brake_mps2["coach"] == 3.0
    assert g(p, kind="yawning", night=True).score == 25


def defaults() -> dict[str, Any]:
    data = json.loads(
        (Path(__file__).parents[2] / "telematics/classify/policy.json").read_text("utf-8")
    )
    assert isinstance(data, dict)
    return data


BAD: list[tuple[dict[str, Any], str]] = [
    ({"severity": {"night_points": 5}}, "version: a custom policy must name its own version"),
    ({"version": ""}, "version: must be a non-empty string"),
    ({"version": "x", "colour": 1}, "unknown setting(s) colour"),
    (
        {"version": "x", "severity": {"nigth_points": 5}},
        "severity: unknown setting(s) nigth_points",
    ),
    ({"version": "x", "cooldown_s": "5"}, "cooldown_s: must be a number, got '5'"),
    ({"version": "x", "cooldown_s": True}, "cooldown_s: must be a number"),
    ({"version": "x", "cooldown_s": -1}, "cooldown_s: must be ≥ 0"),
    ({"version": "x", "tires": []}, "tires: must be a JSON object"),
    ({"version": "x", "tires": {"low_pressure_ratio": 1.2}}, "tires: need 0 < low_pressure"),
    ({"version": "x", "tires": {"imbalance_ratio": 0}}, "tires.imbalance_ratio: must be ≥ 0.01"),
    (
        {"version": "x", "dynamics": {"harsh_brake_mps2": {"tram": 3}}},
        "dynamics.harsh_brake_mps2: unknown name(s) tram",
    ),
    (
        {"version": "x", "dynamics": {"harsh_accel_mps2": {"bus": 13}}},
        "every harsh threshold must be below max_plausible_mps2",
    ),
    ({"version": "x", "dynamics": {"min_dt_s": 6}}, "dynamics: need min_dt_s < max_dt_s"),
    ({"version": "x", "driving": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
    ({"version": "x", "driving": {"night_start_h": 6}}, "night_start_h equals night_end_h"),
    (
        {"version": "x", "driving": {"night_limit_classes": ["coach", "tram"]}},
        "driving.night_limit_classes: unknown name(s) tram",
    ),
    ({"version": "x", "recurrence": {"window_s": 7200}}, "need window_s <= retention_s"),
    ({"version": "x", "recurrence": {"max_per_kind": 3.5}}, "must be a whole number"),
    ({"version": "x", "severity": {"events": {"teleport": "severe"}}}, "unknown name(s) teleport"),
    ({"version": "x", "severity": {"events": {"fatigue": "grave"}}}, "'grave' is not a severity"),
    (
        {"version": "x", "severity": {"events": {"fatigue": ["severe", "general"]}}},
        "severity.events.fatigue: level 2 'general' is less severe than 'severe'",
    ),
    (
        {"version": "x", "severity": {"events": {"fatigue": ["general"]}}},
        "must be a severity or [level1, level2]",
    ),
    ({"version": "x", "severity": {"moderate_at": 120}}, "need moderate_at < severe_at"),
    (
        {"version": "x", "severity": {"base_points": {"moderate": 10}}},
        "need general < moderate_at <= moderate < severe_at <= severe",
    ),
    (
        {"version": "x", "severity": {"speed_points": [[0, 0], [80, 5], [60, 10]]}},
        "severity.speed_points[2]: bounds must be strictly ascending",
    ),
    (
        {"version": "x", "severity": {"speed_points": [[10, 0]]}},
        "severity.speed_points[0]: the first bound must be 0",
    ),
    ({"version": "x", "severity": {"speed_points": [[0]]}}, "must be a pair [from, points]"),
    ({"version": "x", "severity": {"recurrence_points": []}}, "must be a non-empty list"),
    ({"version": "x", "severity": {"zone_points": {"moon": 5}}}, "unknown name(s) moon"),
    (
        {"version": "x", "severity": {"zone_classes": {"school": ["tram"]}}},
        "severity.zone_classes.school: unknown name(s) tram",
    ),
    (
        {"version": "x", "severity": {"always_severe": ["teleport"]}},
        "severity.always_severe: unknown name(s) teleport",
    ),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_policy_files_name_the_setting(
    tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, override)
    with pytest.raises(ConfigError, match=r"^policy file ") as info:
        load_policy(path)
    assert message in str(info.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_policy(write(tmp_path, "{nope"))
    with pytest.raises(ConfigError, match="top level must be a JSON object"):
        load_policy(write(tmp_path, "[1, 2]"))


def test_a_complete_policy_without_a_table_entry_is_rejected() -> None:
    data = defaults()
    del data["severity"]["events"]["fatigue"]
    with pytest.raises(ConfigError, match="no severity for kind"):
        policy_from(data)
    data = defaults()
    del data["dynamics"]["harsh_brake_mps2"]["bus"]
    with pytest.raises(ConfigError, match=r"dynamics.harsh_brake_mps2: missing bus"):
        policy_from(data)
    data = defaults()
    del data["driving"]
    with pytest.raises(ConfigError, match="driving: missing"):
        policy_from(data)


def test_the_silence_settings_are_read_and_checked(tmp_path: Path) -> None:
    assert (POLICY.silence.silent_after_s, POLICY.silence.moving_kmh) == (300, 10)
    assert POLICY.silence.severe_classes == frozenset({"hazmat"})
    custom = load_policy(write(tmp_path, {"version": "t", "silence": {"silent_after_s": 120}}))
    assert (custom.silence.silent_after_s, custom.silence.moving_kmh) == (120, 10)
    for bad, where in (
        ({"moving_kmh": -1}, "silence.moving_kmh"),
        ({"severe_classes": ["tank"]}, "silence.severe_classes"),
        ({"silent_after_s": 0}, "silence.silent_after_s"),
        ({"after": 300}, "silence: unknown setting"),
    ):
        data = defaults()
        data["silence"].update(bad)
        with pytest.raises(ConfigError, match=where):
            policy_from(data)


def test_severities_are_the_protocol_ones() -> None:
    assert tuple(POLICY.severity.base_points) == SEVERITIES
