"""The compiled trees score exactly as scikit-learn does, and their attributions add up."""

from __future__ import annotations

import numpy as np
import pytest

from ml.compiled import MAX_CODES, CompiledTrees, _nodes
from ml.features import FEATURE_NAMES, GROUPS, matrix_from_columns
from ml.model import SeverityModel, TrainParams, train
from ml.synth import generate


@pytest.fixture(scope="module")
def model() -> SeverityModel:
    alarms = generate(60_000, seed=31)
    return train(alarms.columns, alarms.label, params=TrainParams(max_iter=40))


def test_scores_equal_decision_function(model: SeverityModel) -> None:
    x = matrix_from_columns(generate(5_000, seed=32).columns)
    kind, over = FEATURE_NAMES.index("kind"), FEATURE_NAMES.index("over_limit_kmh")
    x[::7, kind] = np.nan  # a kind the vocabulary lacks
    x[::11, over] = np.nan  # no speed limit known
    x[::13, FEATURE_NAMES.index("load")] = 200.0  # a code never seen in training
    compiled = CompiledTrees.from_estimator(model.trees)
    score, parts = compiled.score(x)
    np.testing.assert_allclose(score, model.trees.decision_function(x), rtol=0, atol=1e-9)
    assert parts.shape == (len(x), len(GROUPS))
    # path attribution: the parts explain exactly the distance from the average alarm
    np.testing.assert_allclose(parts.sum(axis=1) + compiled.expected_score, score, atol=1e-9)


def test_one_row_and_no_rows(model: SeverityModel) -> None:
    compiled = model.compile()
    x = matrix_from_columns(generate(3, seed=33).columns)
    one, _ = compiled.score(x[:1])
    np.testing.assert_allclose(one, model.trees.decision_function(x[:1]), atol=1e-9)
    none, parts = compiled.score(x[:0])
    assert none.shape == (0,) and parts.shape == (0, len(GROUPS))


def test_each_groups_part_is_what_its_splits_moved_on_the_rows_path(model: SeverityModel) -> None:
    """Against a plain walk of the same nodes, crediting split by split."""
    nodes = _nodes(model.trees)
    compiled = model.compile()
    x = matrix_from_columns(generate(300, seed=34).columns)
    x[::5, FEATURE_NAMES.index("kind")] = np.nan
    _, parts = compiled.score(x)
    for i, row in enumerate(x):
        expected = np.zeros(len(GROUPS))
        for root in nodes.roots:
            node = int(root)
            while not nodes.leaf[node]:
                v = row[nodes.feature[node]]
                if np.isnan(v):
                    left = bool(nodes.missing_left[node])
                elif nodes.categorical[node]:
                    code = int(v)
                    inside = 0 <= code < MAX_CODES
                    left = bool(nodes.cat_left[node, code] if inside else nodes.missing_left[node])
                else:
                    left = bool(v <= nodes.threshold[node])
                child = int(nodes.left[node] if left else nodes.right[node])
                expected[nodes.group[node]] += nodes.value[child] - nodes.value[node]
                node = child
        np.testing.assert_allclose(parts[i], expected, atol=1e-9)
