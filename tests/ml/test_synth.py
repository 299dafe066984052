"""The offline generator: seeded, the shifted fleet is shifted, labels follow the truth."""

from __future__ import annotations

import numpy as np

from ml.features import KINDS
from ml.synth import FleetMix, generate
from telematics.fleet import VEHICLE_CLASSES


def test_seeded() -> None:
    a, b, c = generate(2000, 3), generate(2000, 3), generate(2000, 4)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.columns.speed_kmh, b.columns.speed_kmh)
    assert not np.array_equal(a.columns.speed_kmh, c.columns.speed_kmh)


def test_shifted_fleet() -> None:
    base, shifted = generate(40_000, 1), generate(40_000, 1, FleetMix().shifted())
    hazmat = VEHICLE_CLASSES.index("hazmat")
    assert (shifted.columns.vehicle_class == hazmat).mean() > 1.5 * (
        base.columns.vehicle_class == hazmat
    ).mean()
    assert shifted.columns.night.mean() > 1.6 * base.columns.night.mean()


def test_labels_follow_the_hidden_probability() -> None:
    a = generate(60_000, 2)
    assert 0.005 < a.label.mean() < 0.04
    assert abs(a.label.mean() - a.true_p.mean()) < 0.003
    top = a.true_p > np.quantile(a.true_p, 0.9)
    assert a.label[top].mean() > 3 * a.label[~top].mean()
    outcomes = {KINDS.index("collision"), KINDS.index("rollover")}
    assert not set(np.unique(a.columns.kind)) & outcomes  # outcomes are never rows
