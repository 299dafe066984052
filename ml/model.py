"""The severity model: gradient-boosted trees, Platt-calibrated, with severity bands.

Training (:func:`train`) fits a ``HistGradientBoostingClassifier`` on 80 % of the rows
and calibrates its log-odds on the other 20 % (Platt scaling: a logistic regression on
the trees' raw score, monotone, so the ranking the bands rely on is kept). The bands are
then read off those held-out probabilities (:func:`choose_bands`).

Serving uses :class:`SeverityModel` only: ``assess`` walks the compiled trees
(``ml/compiled.py``) once per micro-batch for probabilities and explanations;
``predict_proba`` is scikit-learn's own evaluation, which tests hold the compiled one to.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from ml.compiled import CompiledTrees
from ml.features import (
    CATEGORICAL,
    FEATURE_NAMES,
    Columns,
    columns_from_inputs,
    feature_rows,
    matrix_from_columns,
    read_row,
    top_factors,
)
from telematics.classify.alarms import SEVERITY_RANK
from telematics.classify.context import GradingInput
from telematics.errors import UsageError

F64 = NDArray[np.float64]
SEVERITIES = ("general", "moderate", "severe")


@dataclass(frozen=True, slots=True)
class Budget:
    """Share of alarms allowed in each band (general gets the rest)."""

    moderate: float = 0.15
    severe: float = 0.001

    def __post_init__(self) -> None:
        if not (0.0 <= self.severe and 0.0 <= self.moderate and self.moderate + self.severe < 1):
            raise UsageError(f"alert budget out of range: {self}")

    @property
    def alerted(self) -> float:
        """Share in severe or moderate."""
        return self.moderate + self.severe


@dataclass(frozen=True, slots=True)
class Bands:
    """Probability thresholds: moderate from ``moderate_at``, severe from ``severe_at``."""

    moderate_at: float
    severe_at: float

    def codes(self, proba: F64) -> NDArray[np.int64]:
        """0 general, 1 moderate, 2 severe (indexes of ``SEVERITIES``)."""
        out: NDArray[np.int64] = (proba >= self.moderate_at).astype(np.int64) + (
            proba >= self.severe_at
        )
        return out

    def names(self, proba: F64) -> list[str]:
        return [SEVERITIES[c] for c in self.codes(proba)]


def choose_bands(proba: F64, budget: Budget) -> Bands:
    """Thresholds that put ``budget`` shares of these alarms in severe and moderate.

    With calibrated probabilities, the alarms most likely to precede a collision are the
    ones with the highest probability, so for a fixed number of alerts the catch in
    severe + moderate is maximised by taking the top of the ranking: the thresholds are
    quantiles. Ties at a threshold all go to the higher band (the share may exceed the
    budget by the size of the tie).
    """
    if len(proba) == 0:
        raise UsageError("cannot choose bands on no alarms")
    ranked = np.sort(proba)[::-1]
    n = len(ranked)

    def at(share: float) -> float:
        k = int(np.floor(share * n))
        # above every probability when the share is (rounded to) nothing
        return float(np.nextafter(ranked[0], np.inf)) if k == 0 else float(ranked[k - 1])

    return Bands(moderate_at=at(budget.alerted), severe_at=at(budget.severe))


@dataclass(slots=True)
class SeverityModel:
    """What is pickled: the trees, the calibration, the bands and a typical alarm."""

    trees: HistGradientBoostingClassifier
    platt_a: float
    platt_b: float
    bands: Bands
    baseline: F64  # a typical alarm's features (the registry's smoke test at load)
    feature_names: tuple[str, ...] = FEATURE_NAMES
    info: dict[str, Any] = field(default_factory=dict)

    def logit_matrix(self, x: F64) -> F64:
        raw: F64 = self.trees.decision_function(x)
        out: F64 = self.platt_a * raw + self.platt_b
        return out

    def proba_matrix(self, x: F64) -> F64:
        return _sigmoid(self.logit_matrix(x))

    def predict_proba(self, inputs: Sequence[GradingInput]) -> F64:
        """Probability of a collision within the horizon, one per snapshot, one predict."""
        if not inputs:
            return np.empty(0)
        return self.proba_matrix(matrix_from_columns(columns_from_inputs(inputs)))

    def severity_bands(self, proba: F64) -> list[str]:
        return self.bands.names(proba)

    def compile(self) -> CompiledTrees:
        """The trees as generated code: fast on small batches, explanations with each leaf."""
        return CompiledTrees.from_estimator(self.trees)

    def assess(self, rows: Sequence[Sequence[float]], compiled: CompiledTrees) -> tuple[F64, F64]:
        """Probabilities and, per row, the log-odds each feature group adds over the
        average training alarm (rows × GROUPS, path attribution: ``ml/compiled.py``),
        from one walk of the compiled trees over feature rows (``features.feature_rows``)."""
        raw, parts = compiled.score_rows(rows)
        contributions: F64 = self.platt_a * parts
        return _sigmoid(self.platt_a * raw + self.platt_b), contributions

    def explain(self, inputs: Sequence[GradingInput], k: int = 3) -> list[list[str]]:
        """The top factors that raised each alarm's risk, in words."""
        if not inputs:
            return []
        rows = [read_row(x) for x in inputs]
        return top_factors(self.assess(feature_rows(rows), self.compile())[1], rows, k)


def _sigmoid(logit: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-logit))
    return out


def _baseline(x: F64) -> F64:
    """Median of each feature (the mode for categorical ones): 'a typical alarm'."""
    base = np.nanmedian(x, axis=0)
    for name in CATEGORICAL:
        j = FEATURE_NAMES.index(name)
        col = x[:, j][~np.isnan(x[:, j])]
        if len(col):
            values, counts = np.unique(col, return_counts=True)
            base[j] = values[np.argmax(counts)]
    out: F64 = np.nan_to_num(base)
    return out


@dataclass(frozen=True, slots=True)
class TrainParams:
    max_iter: int = 300
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 100
    l2_regularization: float = 1.0
    calibration_share: float = 0.2
    seed: int = 0


def train(
    columns: Columns,
    label: NDArray[np.bool_],
    budget: Budget | None = None,
    params: TrainParams | None = None,
) -> SeverityModel:
    """Fit, calibrate on a held-out split, and choose bands there."""
    budget = budget or Budget()
    params = params or TrainParams()
    y = np.asarray(label, dtype=np.int64)
    if len(y) < 100 or y.sum() < 10 or y.sum() == len(y):
        raise UsageError(f"need both outcomes to train: {len(y)} rows, {int(y.sum())} positive")
    started = time.perf_counter()
    x = matrix_from_columns(columns)
    rng = np.random.default_rng(params.seed)
    held = rng.random(len(y)) < params.calibration_share
    trees = HistGradientBoostingClassifier(
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        categorical_features=[FEATURE_NAMES.index(c) for c in CATEGORICAL],
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=15,
        random_state=params.seed,
    )
    trees.fit(x[~held], y[~held])
    raw = trees.decision_function(x[held])
    platt = LogisticRegression(C=1e6).fit(raw[:, None], y[held])
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    model = SeverityModel(trees, a, b, Bands(1.0, 1.0), _baseline(x[~held]))
    proba = model.proba_matrix(x[held])
    model.bands = choose_bands(proba, budget)
    model.info = {
        "rows": len(y),
        "positives": int(y.sum()),
        "calibration_rows": int(held.sum()),
        "iterations": int(trees.n_iter_),
        "train_seconds": round(time.perf_counter() - started, 1),
        "budget": {"moderate": budget.moderate, "severe": budget.severe},
    }
    return model


def severity_rank(names: Sequence[str]) -> NDArray[np.int64]:
    return np.array([SEVERITY_RANK[s] for s in names], dtype=np.int64)
