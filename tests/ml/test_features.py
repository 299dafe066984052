"""Features: the serving path (GradingInput) and the training path (Columns) agree."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import numpy as np

from ml.features import (
    FEATURE_NAMES,
    GROUPS,
    Columns,
    Row,
    columns_from_inputs,
    features_matrix,
    matrix_from_columns,
    read_row,
    top_factors,
)
from ml.synth import generate
from telematics.classify.context import GradingInput


def test_train_and_serve_compute_the_same_matrix() -> None:
    alarms = generate(3000, seed=5)
    inputs = alarms.columns.to_inputs()
    inputs += [  # what the generator never makes: unknown values, no limit, odd hours
        _input(kind="not_a_kind", load="sideways", vehicle_class="tram", speed_limit_kmh=None),
        _input(level=None, zone_kinds=frozenset({"nowhere"}), driver_hours=-1.0, base="x"),
    ]
    direct = matrix_from_columns(alarms.columns)
    served = features_matrix(inputs)  # serving's path: rows of plain numbers
    assert served.shape == (3002, len(FEATURE_NAMES))
    np.testing.assert_array_equal(np.isnan(direct), np.isnan(served[:3000]))
    np.testing.assert_allclose(
        np.nan_to_num(direct), np.nan_to_num(served[:3000]), rtol=0, atol=1e-9
    )  # (to_inputs rounds ts to the microsecond)
    # The same inputs through the columns path: the very same numbers, unknowns included.
    np.testing.assert_array_equal(matrix_from_columns(columns_from_inputs(inputs)), served)
    assert features_matrix([]).shape == (0, len(FEATURE_NAMES))
    assert Row._fields == tuple(f.name for f in fields(Columns))  # read positionally


def _input(**changes: object) -> GradingInput:
    fields: dict[str, object] = dict(
        kind="phone_call", level=2, ts=datetime(2026, 3, 1, 16, 30, tzinfo=UTC),  # 00:30 local
        speed_kmh=95.0, speed_limit_kmh=80.0, vehicle_class="hazmat", load="full",
        night=True, zone_kinds=frozenset({"tunnel", "school"}), recurrence=3,
        continuous_driving_s=4 * 3600.0, driving_today_s=6 * 3600.0, recent_alarms=5,
        tire_conditions=1, driver_alarms=12, driver_hours=2.0,
    )  # fmt: skip
    fields.update(changes)
    return GradingInput(**fields)  # type: ignore[arg-type]


def test_feature_values() -> None:
    row = dict(zip(FEATURE_NAMES, features_matrix([_input()])[0], strict=True))
    assert row["level"] == 2 and row["night"] == 1 and row["recurrence"] == 3
    assert row["over_limit_kmh"] == 15.0
    assert row["hour_local"] == 0.5  # Asia/Shanghai
    assert row["zone_school"] == 1 and row["zone_tunnel"] == 1 and row["zone_depot"] == 0
    assert row["continuous_driving_h"] == 4.0
    assert row["driver_alarms_per_h"] == (12 + 4) / 2.5  # shrunk toward 8/h over 0.5 h


def test_unknown_values_are_missing_not_wrong() -> None:
    x = features_matrix([_input(kind="not_a_kind", load="sideways", speed_limit_kmh=None)])[0]
    for name in ("kind", "load", "over_limit_kmh"):
        assert np.isnan(x[FEATURE_NAMES.index(name)])


def test_top_factors_in_words() -> None:
    rows = [read_row(_input()), read_row(_input(night=False))]
    contrib = np.zeros((2, len(GROUPS)))
    names = list(GROUPS)
    contrib[0, names.index("time")] = 1.0
    contrib[0, names.index("kind")] = 0.5
    contrib[0, names.index("zone")] = -2.0  # lowered the risk: never a "top factor"
    contrib[1, names.index("driving")] = 0.7
    words = top_factors(contrib, rows, k=3)
    assert words[0] == ["night (00 h) (×2.7 odds)", "phone call L2 (×1.6 odds)"]
    assert words[1] == ["4.0 h without a break (×2.0 odds)"]
