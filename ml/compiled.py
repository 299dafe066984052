"""The trained trees as flat numpy arrays: every tree walked at once, and each feature
group's share of the score collected on the way.

Why: scikit-learn's ``decision_function`` pays a fixed cost per call (input validation,
its column transformer, one Cython call per tree), about 1.5 ms for the few alarms a
server grades at a time, and explaining by occlusion multiplied the rows by ten. Here one
call walks all trees level by level over (rows × trees) index arrays, so a micro-batch of
a few alarms costs tens of microseconds per level, and explanations come from the same
walk (path attribution, as in Saabas' treeinterpreter): each split moves the expected
score from the node's to the child's, and that move is credited to the split feature's
group. Contributions plus the trees' expected score add up to the raw score exactly.

The arrays are built from the fitted estimator's own nodes and its categorical encoder;
a test checks the scores equal ``decision_function`` on generated alarms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier

from ml.features import FEATURE_NAMES, GROUPS

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

#: Raw codes of categorical features are small vocabulary indexes (``ml/features.py``).
MAX_CODES = 256


@dataclass(frozen=True, slots=True)
class CompiledTrees:
    roots: I64  # (trees,) index of each tree's root in the node arrays
    feature: I64  # (nodes,) column of the feature matrix (FEATURE_NAMES order)
    threshold: F64  # numeric split: left when value <= threshold
    missing_left: B  # NaN (and an unknown category) goes left
    categorical: B
    cat_left: B  # (nodes, MAX_CODES) categorical split: raw code → goes left
    left: I64
    right: I64
    leaf: B
    value: F64  # leaf: its score; split node: the expected score of its subtree
    group: I64  # the split feature's explanation group (index into GROUPS)
    baseline: float  # the estimator's constant term
    depth: int  # levels to walk

    @staticmethod
    def from_estimator(trees: HistGradientBoostingClassifier) -> CompiledTrees:
        columns, luts = _encoding(trees)
        group_of = np.zeros(len(FEATURE_NAMES), np.int64)
        for g, idx in enumerate(GROUPS.values()):
            group_of[list(idx)] = g
        parts: list[Any] = []
        cat_rows: list[B] = []
        roots: list[int] = []
        offset = 0
        for (predictor,) in trees._predictors:  # binary: one tree per iteration
            nodes = predictor.nodes
            bitsets = predictor.raw_left_cat_bitsets
            roots.append(offset)
            n = len(nodes)
            feature = columns[nodes["feature_idx"].astype(np.int64)]
            is_cat = nodes["is_categorical"].astype(bool) & ~nodes["is_leaf"].astype(bool)
            cat = np.zeros((n, MAX_CODES), np.bool_)
            for i in np.flatnonzero(is_cat):
                encoded_left = _bits(bitsets[nodes["bitset_idx"][i]])
                lut = luts[int(feature[i])]  # raw code → encoded category, −1 unknown
                known = lut >= 0
                cat[i, known] = encoded_left[lut[known]]
                cat[i, ~known] = bool(nodes["missing_go_to_left"][i])
            parts.append((nodes, feature, is_cat, offset))
            cat_rows.append(cat)
            offset += n
        nodes_all = np.concatenate([p[0] for p in parts])
        offsets = np.concatenate([np.full(len(p[0]), p[3], np.int64) for p in parts])
        leaf = nodes_all["is_leaf"].astype(bool)
        left = np.where(leaf, 0, nodes_all["left"].astype(np.int64) + offsets)
        right = np.where(leaf, 0, nodes_all["right"].astype(np.int64) + offsets)
        feature = np.concatenate([p[1] for p in parts])
        value = _expected_values(nodes_all["value"], nodes_all["count"], leaf, left, right)
        return CompiledTrees(
            roots=np.array(roots, np.int64),
            feature=np.where(leaf, 0, feature),
            threshold=nodes_all["num_threshold"].astype(np.float64),
            missing_left=nodes_all["missing_go_to_left"].astype(bool),
            categorical=np.concatenate([p[2] for p in parts]),
            cat_left=np.concatenate(cat_rows),
            left=left,
            right=right,
            leaf=leaf,
            value=value,
            group=group_of[np.where(leaf, 0, feature)],
            baseline=float(np.ravel(trees._baseline_prediction)[0]),
            depth=int(nodes_all["depth"].max()) + 1,
        )

    def score(self, x: F64) -> tuple[F64, F64]:
        """Raw scores (as ``decision_function``) and each group's part of them: (rows,),
        (rows × GROUPS). The parts add up to score − ``expected_score``."""
        n, groups = len(x), len(GROUPS)
        at = np.repeat(self.roots[None, :], n, axis=0)
        rows = np.repeat(np.arange(n)[:, None], len(self.roots), axis=1)
        parts = np.zeros(n * groups)
        for _ in range(self.depth):
            walking = ~self.leaf[at]
            if not walking.any():
                break
            node = at[walking]
            row = rows[walking]
            v = x[row, self.feature[node]]
            missing = np.isnan(v)
            go_left = v <= self.threshold[node]
            go_left[missing] = self.missing_left[node[missing]]
            cat = self.categorical[node] & ~missing
            if cat.any():
                codes = v[cat].astype(np.int64)
                inside = (codes >= 0) & (codes < MAX_CODES)
                lefts = self.missing_left[node[cat]].copy()  # out of range: as missing
                lefts[inside] = self.cat_left[node[cat][inside], codes[inside]]
                go_left[cat] = lefts
            child = np.where(go_left, self.left[node], self.right[node])
            parts += np.bincount(
                row * groups + self.group[node],
                weights=self.value[child] - self.value[node],
                minlength=n * groups,
            )
            at[walking] = child
        score: F64 = self.baseline + self.value[at].sum(axis=1)
        return score, parts.reshape(n, groups)

    @property
    def expected_score(self) -> float:
        """The score of the average training alarm (the sum of the roots' values)."""
        return self.baseline + float(self.value[self.roots].sum())


def _encoding(trees: HistGradientBoostingClassifier) -> tuple[I64, dict[int, I64]]:
    """The estimator's columns → ours, and per categorical column raw code → encoded.

    scikit-learn ordinal-encodes the categorical columns and puts them first; its trees'
    ``feature_idx`` count in that order, and categorical splits test encoded values."""
    mask = np.asarray(trees.is_categorical_, bool)
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)]).astype(np.int64)
    luts: dict[int, I64] = {}
    pre = getattr(trees, "_preprocessor", None)
    if pre is None:  # older scikit-learn: categories are used as given (codes 0…n−1)
        for column in np.flatnonzero(mask):
            luts[int(column)] = np.arange(MAX_CODES, dtype=np.int64)
        return np.arange(len(mask), dtype=np.int64), luts
    encoder = pre.named_transformers_["encoder"]
    for column, categories in zip(np.flatnonzero(mask), encoder.categories_, strict=True):
        lut = np.full(MAX_CODES, -1, np.int64)
        for encoded, raw in enumerate(np.asarray(categories, np.float64)):
            if not np.isnan(raw) and 0 <= raw < MAX_CODES:
                lut[int(raw)] = encoded
        luts[int(column)] = lut
    return order, luts


def _bits(words: NDArray[np.uint32]) -> B:
    """A 256-bit bitset (8 × uint32, little-endian bit order) as booleans."""
    out: B = (
        ((words[:, None].astype(np.uint64) >> np.arange(32, dtype=np.uint64)) & 1)
        .astype(bool)
        .ravel()
    )
    return out


def _expected_values(leaf_value: F64, count: NDArray[Any], leaf: B, left: I64, right: I64) -> F64:
    """Each split node's expected score: its leaves' values weighted by training counts.

    Children come after their parent in each tree's node array, so one backward pass
    sees both children of a node before the node."""
    value = np.asarray(leaf_value, np.float64).copy()
    weight = np.asarray(count, np.float64).copy()
    for i in range(len(value) - 1, -1, -1):
        if not leaf[i]:
            wl, wr = weight[left[i]], weight[right[i]]
            total = wl + wr
            value[i] = (value[left[i]] * wl + value[right[i]] * wr) / total if total else 0.0
            weight[i] = total
    return value
