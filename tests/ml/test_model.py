"""Training, calibration and bands on small synthetic sets."""

from __future__ import annotations

import numpy as np
import pytest

from ml.evaluate import catch_at_share, evaluate, expected_calibration_error
from ml.model import Budget, SeverityModel, TrainParams, choose_bands, train
from ml.synth import FleetMix, generate
from telematics.errors import UsageError

FAST = TrainParams(max_iter=60)


@pytest.fixture(scope="module")
def model() -> SeverityModel:
    alarms = generate(60_000, seed=11)
    return train(alarms.columns, alarms.label, params=FAST)


def test_bands_meet_the_budget() -> None:
    proba = np.random.default_rng(1).beta(1, 40, 100_000)
    bands = choose_bands(proba, Budget(moderate=0.15, severe=0.001))
    codes = bands.codes(proba)
    assert (codes == 2).mean() == pytest.approx(0.001, abs=1e-5)
    assert (codes >= 1).mean() == pytest.approx(0.151, abs=1e-5)
    # the bands are the top of the ranking: nothing general is above anything moderate
    assert proba[codes == 0].max() < proba[codes == 1].min()
    none = choose_bands(proba, Budget(moderate=0.0, severe=0.0)).codes(proba)
    assert not none.any()


def test_budget_is_checked() -> None:
    with pytest.raises(UsageError):
        Budget(moderate=0.9, severe=0.2)


def test_calibrated_and_better_than_the_rules(model: SeverityModel) -> None:
    held = generate(20_000, seed=12, mix=FleetMix().shifted())
    e = evaluate("held", model, held.columns, held.label, held.true_p)
    assert e.ece < 0.01
    assert e.model_catch_same_budget > e.rules_catch
    assert e.oracle_catch_same_budget is not None
    assert e.model_catch_same_budget <= e.oracle_catch_same_budget + 0.05


def test_ece_detects_miscalibration() -> None:
    rng = np.random.default_rng(2)
    p = rng.beta(1, 30, 50_000)
    y = rng.random(50_000) < p
    assert expected_calibration_error(p, y) < 0.005
    assert expected_calibration_error(np.minimum(p * 3, 1), y) > 0.03


def test_catch_at_share() -> None:
    score = np.array([0.9, 0.8, 0.1, 0.2])
    label = np.array([True, False, True, False])
    assert catch_at_share(score, label, 0.5) == 0.5
    assert catch_at_share(score, label, 1.0) == 1.0


def test_explanations_name_what_raised_the_risk(model: SeverityModel) -> None:
    alarms = generate(500, seed=13)
    inputs = alarms.columns.to_inputs()
    proba = model.predict_proba(inputs)
    assert proba.shape == (500,) and ((proba > 0) & (proba < 1)).all()
    words = model.explain(inputs[:50])
    assert len(words) == 50 and any(words)
    assert all(len(w) <= 3 for w in words)
    assert model.predict_proba([]).shape == (0,)
