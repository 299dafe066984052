"""Collisions in the live simulator follow alarms, per the hidden-truth model."""

from __future__ import annotations

import random

import numpy as np
import pytest

from telematics.sim import risk
from telematics.sim.vehicle import VehicleSim

T0 = 1_795_680_000.0


def test_crashes_follow_alarms_within_the_horizon() -> None:
    t = [T0]
    crashes = alarms = 0
    for n in range(12):
        sim = VehicleSim(f"SU-{n}", "freight", 3, unit_index=n, clock=lambda: t[0])
        last_alarm = -1e9
        for _ in range(12 * 3600):
            t[0] += 1.0
            for item in sim.step(1.0):
                if item["type"] != "event":
                    continue
                if item["kind"] in risk.OUTCOME_KINDS:
                    crashes += 1
                    assert sim.sim_t - last_alarm <= risk.HORIZON_S
                else:
                    alarms += 1
                    last_alarm = sim.sim_t
    assert alarms > 500
    assert 0 < crashes < 0.06 * alarms  # sparing: a few per hundred alarms


def test_live_draws_match_the_vectorised_truth() -> None:
    model = risk.CrashModel("coach", random.Random(1))
    model.driver_log_risk = 0.5
    rng = random.Random(2)
    hits = sum(
        model.after_alarm("phone_call", 2, i * 4000.0, 100.0, True, 5.0, 0) is not None
        for i in range(4000)
    )
    one = np.ones(1)
    no = np.zeros(1, dtype=np.bool_)
    p = risk.sigmoid(risk.collision_logit(
        kind=np.array([risk.KIND_INDEX["phone_call"]]), level2=~no, speed_kmh=one * 100,
        vehicle_class=np.array([0]), load_full=no, load_half=no, night=~no, school=no,
        tunnel=no, flood_prone=no, depot=no, hazmat_zone=no, recurrence=one, recent_alarms=one,
        continuous_h=one * 5, tire_conditions=0 * one, driver_log_risk=one * 0.5,
        vehicle_effect=one * model.vehicle_effect,
        noise=np.array([rng.gauss(0, risk.NOISE_SD) for _ in range(20000)]),
    )).mean()  # fmt: skip
    assert abs(hits / 4000 - p) < 4 * np.sqrt(p * (1 - p) / 4000) + 0.005


def test_one_alarm_in_plain_numbers_gets_the_arrays_probability() -> None:
    """The live simulator grades one alarm with SCALARS; the training generator grades
    arrays with numpy: the same formula must give the same number, every term."""
    rng = np.random.default_rng(5)
    n = 500
    arrays = {
        "kind": rng.integers(0, len(risk.KINDS), n),
        "vehicle_class": rng.integers(0, len(risk.CLASS_INDEX), n),
        "speed_kmh": rng.uniform(0, 130, n),
        "recurrence": rng.integers(0, 6, n).astype(float),
        "recent_alarms": rng.integers(0, 12, n).astype(float),
        "continuous_h": rng.uniform(0, 10, n),
        "tire_conditions": rng.integers(0, 4, n).astype(float),
        "driver_log_risk": rng.normal(0, 0.5, n),
        "vehicle_effect": rng.normal(0, 0.35, n),
        "noise": rng.normal(0, 0.6, n),
    }
    for flag in ("level2", "load_full", "load_half", "night", "school", "tunnel",
                 "flood_prone", "depot", "hazmat_zone"):  # fmt: skip
        arrays[flag] = rng.random(n) < 0.5
    expected = risk.sigmoid(risk.collision_logit(**arrays))
    for i in range(n):
        one = {k: v[i].item() for k, v in arrays.items()}
        got: object = risk.sigmoid(risk.collision_logit(**one, ops=risk.SCALARS), risk.SCALARS)
        assert type(got) is float
        assert got == pytest.approx(expected[i], rel=1e-12)
