"""The trained trees as generated Python: one function finds every tree's leaf for a
row, and each leaf carries its path's explanation.

Why: scikit-learn's ``decision_function`` pays a fixed cost per call (input validation,
its column transformer, one Cython call per tree), about 1.5 ms for the few alarms a
server grades at a time. Walking all trees level by level in numpy instead still cost
~20 numpy calls per level, 17 levels deep: ~0.6 ms for one alarm on the slow benchmark
host, most of the model's time on the hot path. Here each tree is nested ``if``s on
local variables, compiled once when the model loads, so a row costs a few hundred
comparisons (tens of microseconds) and a batch of any size two numpy gathers.

Explanations are path attribution (as in Saabas' treeinterpreter): each split moves the
expected score from the node's to the child's, and that move is credited to the split
feature's group. A leaf's path is fixed, so its credits are summed once per leaf at
compile time. Contributions plus the trees' expected score add up to the raw score
exactly.

The code is generated from the fitted estimator's own nodes and its categorical encoder
(numbers only, printed with ``repr``, which round-trips floats); a test checks the scores
equal ``decision_function`` on generated alarms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier

from ml.features import FEATURE_NAMES, GROUPS
from telematics.errors import ConfigError

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

#: Raw codes of categorical features are small vocabulary indexes (``ml/features.py``).
MAX_CODES = 256

#: Python refuses more than 100 levels of indentation; trees of the default 31 leaves
#: are at most 30 deep.
MAX_DEPTH = 90

#: Trees per generated function (see ``_leaf_finder``).
TREES_PER_CHUNK = 8

LeafFinder = Callable[[Sequence[float]], tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class _Nodes:
    """Every tree's nodes in one set of arrays (node indexes are global)."""

    roots: I64  # (trees,) index of each tree's root
    feature: I64  # column of the feature matrix (FEATURE_NAMES order)
    threshold: F64  # numeric split: left when value <= threshold
    missing_left: B  # NaN (and an unknown category) goes left
    categorical: B
    cat_left: B  # (nodes, MAX_CODES) categorical split: raw code → goes left
    left: I64
    right: I64
    leaf: B
    value: F64  # leaf: its score; split node: the expected score of its subtree
    group: I64  # the split feature's explanation group (index into GROUPS)


@dataclass(frozen=True, slots=True)
class CompiledTrees:
    roots: I64  # (trees,) each tree's root node
    value: F64  # (nodes,) leaf: its score; split node: the expected score of its subtree
    leaf_parts: F64  # (nodes, GROUPS) a leaf: each group's credit on the path to it
    baseline: float  # the estimator's constant term
    leaves_of: LeafFinder  # one row (FEATURE_NAMES order) → each tree's leaf node

    @staticmethod
    def from_estimator(trees: HistGradientBoostingClassifier) -> CompiledTrees:
        nodes = _nodes(trees)
        return CompiledTrees(
            roots=nodes.roots,
            value=nodes.value,
            leaf_parts=_leaf_parts(nodes),
            baseline=float(np.ravel(trees._baseline_prediction)[0]),
            leaves_of=_leaf_finder(nodes),
        )

    def score(self, x: F64) -> tuple[F64, F64]:
        """Raw scores (as ``decision_function``) and each group's part of them: (rows,),
        (rows × GROUPS). The parts add up to score − ``expected_score``."""
        return self.score_rows(x.tolist())

    def score_rows(self, rows: Sequence[Sequence[float]]) -> tuple[F64, F64]:
        """:meth:`score` for rows of plain numbers (serving's few rows: no matrix)."""
        find = self.leaves_of
        leaves = np.array([find(row) for row in rows], np.int64)
        leaves = leaves.reshape(len(rows), len(self.roots))
        score: F64 = self.baseline + self.value[leaves].sum(axis=1)
        parts: F64 = self.leaf_parts[leaves].sum(axis=1)
        return score, parts

    @property
    def expected_score(self) -> float:
        """The score of the average training alarm (the sum of the roots' values)."""
        return self.baseline + float(self.value[self.roots].sum())


def _nodes(trees: HistGradientBoostingClassifier) -> _Nodes:
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
    if int(nodes_all["depth"].max()) > MAX_DEPTH:
        raise ConfigError(f"a tree deeper than {MAX_DEPTH} levels cannot be compiled")
    return _Nodes(
        roots=np.array(roots, np.int64),
        feature=np.where(leaf, 0, feature),
        threshold=nodes_all["num_threshold"].astype(np.float64),
        missing_left=nodes_all["missing_go_to_left"].astype(bool),
        categorical=np.concatenate([p[2] for p in parts]),
        cat_left=np.concatenate(cat_rows),
        left=left,
        right=right,
        leaf=leaf,
        value=_expected_values(nodes_all["value"], nodes_all["count"], leaf, left, right),
        group=group_of[np.where(leaf, 0, feature)],
    )


def _leaf_parts(nodes: _Nodes) -> F64:
    """Each leaf's credits per group: the sum over its path of (child − node) value."""
    parts = np.zeros((len(nodes.value), len(GROUPS)))
    value, group = nodes.value, nodes.group
    stack = [int(r) for r in nodes.roots]  # a root (a one-leaf tree too) credits nothing
    while stack:  # parents before children: a child starts from its parent's credits
        node = stack.pop()
        if nodes.leaf[node]:
            continue
        for child in (int(nodes.left[node]), int(nodes.right[node])):
            parts[child] = parts[node]
            parts[child, group[node]] += value[child] - value[node]
            stack.append(child)
    return parts


def _leaf_finder(nodes: _Nodes) -> LeafFinder:
    """Generate and compile ``leaves_of(row)``.

    In chunks of trees: ``compile`` holds the GIL throughout, and 60 trees at once
    (~80 ms on the benchmark host) would stall a worker's event loop at a model switch.
    """
    unpack = f"    {', '.join(f'f{j}' for j in range(len(FEATURE_NAMES)))}, = row"
    chunks: dict[str, Any] = {}
    for lo in range(0, len(nodes.roots), TREES_PER_CHUNK):
        lines = ["def chunk(row):", unpack]
        names = []
        for t in range(lo, min(lo + TREES_PER_CHUNK, len(nodes.roots))):
            _emit_tree(nodes, int(nodes.roots[t]), f"l{t}", lines)
            names.append(f"l{t}, ")
        lines.append(f"    return ({''.join(names)})")
        chunks[f"chunk{len(chunks)}"] = _define("\n".join(lines), "chunk", {"INF": math.inf})
    calls = " + ".join(f"{name}(row)" for name in chunks) or "()"
    finder: LeafFinder = _define(f"def leaves_of(row):\n    return {calls}", "leaves_of", chunks)
    return finder


def _define(source: str, name: str, namespace: dict[str, Any]) -> Any:
    # The source holds only numbers read from the model file (which joblib trusts anyway).
    exec(compile(source, "<compiled trees>", "exec"), namespace)
    return namespace[name]


def _emit_tree(nodes: _Nodes, root: int, name: str, lines: list[str]) -> None:
    stack: list[tuple[int, int]] = [(root, 1)]  # (node, indentation level)
    while stack:
        node, level = stack.pop()
        pad = "    " * level
        if node < 0:  # the else branch marker of the split ~node
            lines.append(f"{pad}else:")
            continue
        if nodes.leaf[node]:
            lines.append(f"{pad}{name} = {node}")
            continue
        lines.append(f"{pad}if {_goes_left(nodes, node)}:")
        # Emitted in order: left subtree, ``else:``, right subtree.
        stack.append((int(nodes.right[node]), level + 1))
        stack.append((~node, level))
        stack.append((int(nodes.left[node]), level + 1))


def _goes_left(nodes: _Nodes, node: int) -> str:
    """The split as a Python condition on ``f<column>`` (NaN is missing)."""
    v = f"f{int(nodes.feature[node])}"
    missing_left = bool(nodes.missing_left[node])
    if nodes.categorical[node]:
        codes = np.flatnonzero(nodes.cat_left[node]).tolist()
        # In range: int() truncates as numpy's astype does; NaN compares false.
        inside = f"-1.0 < {v} < {float(MAX_CODES)!r}"
        if missing_left:
            return f"not ({inside}) or int({v}) in {_set(codes)}"
        return f"{inside} and int({v}) in {_set(codes)}"
    threshold = _number(float(nodes.threshold[node]))
    if missing_left:
        return f"not ({v} > {threshold})"  # NaN > t is false: goes left
    return f"{v} <= {threshold}"  # NaN <= t is false: goes right


def _number(x: float) -> str:
    """A float literal that reads back exactly (``repr``; infinities by name)."""
    if math.isinf(x):
        return "INF" if x > 0 else "-INF"
    return repr(x)


def _set(codes: list[int]) -> str:
    return "{" + ", ".join(map(str, codes)) + "}" if codes else "()"


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
