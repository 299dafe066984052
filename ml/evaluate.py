"""Model against rules on held-out alarms: numbers (pure) and the report (files).

The comparison that matters is at the same alert budget: the rules put some share of
the alarms in severe + moderate; the model's top share of the same size by probability
is compared with it on how many of the alarms that preceded a collision each catches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ml.features import Columns, matrix_from_columns
from ml.model import SEVERITIES, Budget, SeverityModel, choose_bands, severity_rank
from telematics.classify.context import GradingInput, RulesGrader, load_policy

F64 = NDArray[np.float64]


def expected_calibration_error(proba: F64, label: NDArray[np.bool_], bins: int = 20) -> float:
    """ECE over equal-count bins: Σ (bin share) × |mean predicted − observed rate|.

    Equal-count bins, not equal-width: with a 1–2 % base rate nearly every alarm falls in
    the first tenth of [0, 1], where equal-width bins would average errors away.
    """
    order = np.argsort(proba)
    err = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            err += len(chunk) * abs(float(proba[chunk].mean()) - float(label[chunk].mean()))
    return err / max(len(proba), 1)


def reliability(proba: F64, label: NDArray[np.bool_], bins: int = 20) -> tuple[F64, F64]:
    order = np.argsort(proba)
    parts = [c for c in np.array_split(order, bins) if len(c)]
    return (np.array([proba[c].mean() for c in parts]), np.array([label[c].mean() for c in parts]))


def catch_at_share(score: F64, label: NDArray[np.bool_], share: float) -> float:
    """Share of positives among the top ``share`` of alarms by ``score``."""
    k = round(share * len(score))
    if k == 0 or not label.any():
        return 0.0
    top = np.argsort(-score, kind="stable")[:k]
    return float(label[top].sum() / label.sum())


def rules_severities(columns: Columns) -> NDArray[np.int64]:
    """The default risk policy's grades of the same alarms (0 general … 2 severe)."""
    graded = RulesGrader(load_policy()).grade_many(columns.to_inputs())
    return severity_rank([g.severity for g in graded])


@dataclass(slots=True)
class Evaluation:
    name: str
    n: int
    positives: int
    ece: float
    auc: float
    average_precision: float
    brier: float
    rules_share: float  # alarms the rules put in severe + moderate
    rules_catch: float  # pre-collision alarms among them
    model_catch_same_budget: float  # the model's top share of the same size
    oracle_catch_same_budget: float | None  # the hidden truth's (synthetic data only)
    model_share: float  # with the model's own bands
    model_catch: float
    rules_severe_share: float
    rules_severe_catch: float
    model_severe_share: float
    model_severe_catch: float
    confusion: list[list[int]]  # rules (rows) × model (columns), general..severe
    split: dict[str, dict[str, dict[str, float]]]  # who → band → share, positive rate
    proba: F64
    label: NDArray[np.bool_]
    rules: NDArray[np.int64]
    model: NDArray[np.int64]

    def summary(self) -> dict[str, Any]:
        skip = {"proba", "label", "rules", "model"}
        return {k: getattr(self, k) for k in self.__slots__ if k not in skip}


def evaluate(
    name: str,
    model: SeverityModel,
    columns: Columns,
    label: NDArray[np.bool_],
    true_p: F64 | None = None,
    rules: NDArray[np.int64] | None = None,
) -> Evaluation:
    from sklearn.metrics import average_precision_score, roc_auc_score

    proba = model.proba_matrix(matrix_from_columns(columns))
    rules = rules_severities(columns) if rules is None else rules
    bands = model.bands.codes(proba)
    rules_share = float((rules >= 1).mean())
    confusion = [[int(((rules == r) & (bands == m)).sum()) for m in range(3)] for r in range(3)]
    pos = max(int(label.sum()), 1)

    def split(codes: NDArray[np.int64]) -> dict[str, dict[str, float]]:
        out = {}
        for i, sev in enumerate(SEVERITIES):
            sel = codes == i
            out[sev] = {
                "share": float(sel.mean()),
                "positive_rate": float(label[sel].mean()) if sel.any() else 0.0,
                "catch": float(label[sel].sum() / pos),
            }
        return out

    return Evaluation(
        name=name,
        n=len(label),
        positives=int(label.sum()),
        ece=expected_calibration_error(proba, label),
        auc=float(roc_auc_score(label, proba)),
        average_precision=float(average_precision_score(label, proba)),
        brier=float(np.mean((proba - label) ** 2)),
        rules_share=rules_share,
        rules_catch=float(label[rules >= 1].sum() / pos),
        model_catch_same_budget=catch_at_share(proba, label, rules_share),
        oracle_catch_same_budget=None
        if true_p is None
        else catch_at_share(true_p, label, rules_share),
        model_share=float((bands >= 1).mean()),
        model_catch=float(label[bands >= 1].sum() / pos),
        rules_severe_share=float((rules == 2).mean()),
        rules_severe_catch=float(label[rules == 2].sum() / pos),
        model_severe_share=float((bands == 2).mean()),
        model_severe_catch=float(label[bands == 2].sum() / pos),
        confusion=confusion,
        split={"rules": split(rules), "model": split(bands)},
        proba=proba,
        label=label,
        rules=rules,
        model=bands,
    )


def same_budget_bands(proba: F64, share: float, severe: float) -> NDArray[np.int64]:
    """The model's bands re-chosen for another budget (for what-if tables)."""
    return choose_bands(proba, Budget(share - severe, severe)).codes(proba)


# ---- the report -------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def serving_times(
    model: SeverityModel,
    inputs: Sequence[GradingInput],
    sizes: Sequence[int] = (1, 8),
    repeats: int = 500,
) -> dict[int, tuple[float, float]]:
    """Milliseconds p50 / p99 to grade one micro-batch of each size as the server does
    (``ModelGrader.grade_many``: features, compiled trees, bands, explanations)."""
    import time

    from ml.grader import ModelGrader
    from ml.registry import LoadedModel

    grader = ModelGrader(LoadedModel("report", {}, model), load_policy())
    out: dict[int, tuple[float, float]] = {}
    for size in sizes:
        times = []
        for r in range(repeats):
            lo = (r * size) % max(len(inputs) - size, 1)
            batch = inputs[lo : lo + size]
            started = time.perf_counter()
            grader.grade_many(batch)
            times.append((time.perf_counter() - started) * 1000)
        out[size] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)))
    return out


def write_report(
    out: Path,
    version: str,
    meta: dict[str, Any],
    evaluations: Sequence[Evaluation],
    serving: dict[int, tuple[float, float]] | None = None,
) -> Path:
    """``report.md`` and its PNG plots in ``out``; returns the Markdown file's path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Severity model {version}: evaluation",
        "",
        f"Trained on {meta.get('training', {}).get('rows', '?')} alarms "
        f"({meta.get('data', {}).get('source', '?')}); bands for a budget of "
        f"{_pct(meta.get('training', {}).get('budget', {}).get('moderate', 0))} moderate, "
        f"{_pct(meta.get('training', {}).get('budget', {}).get('severe', 0))} severe.",
        "",
        "Catch = share of the alarms followed by a collision within 30 minutes that are "
        "graded severe or moderate. *Same budget*: the model's most probable alarms, as "
        "many as the rules put in severe + moderate.",
        "",
        "| held-out set | alarms | positives | rules: alerted | rules: catch | "
        "model, same budget: catch | hidden truth, same budget | model bands: alerted | "
        "model bands: catch | ECE | ROC AUC | avg precision |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in evaluations:
        oracle = "–" if e.oracle_catch_same_budget is None else _pct(e.oracle_catch_same_budget)
        lines.append(
            f"| {e.name} | {e.n} | {e.positives} | {_pct(e.rules_share)} | "
            f"{_pct(e.rules_catch)} | **{_pct(e.model_catch_same_budget)}** | {oracle} | "
            f"{_pct(e.model_share)} | {_pct(e.model_catch)} | {e.ece:.4f} | {e.auc:.3f} | "
            f"{e.average_precision:.3f} |"
        )
    training = meta.get("training", {})
    lines += [
        "",
        f"Training took {training.get('train_seconds', '?')} s on "
        f"{training.get('rows', '?')} alarms ({training.get('iterations', '?')} boosting "
        "iterations).",
    ]
    if serving:
        lines += [
            "",
            "Grading one micro-batch as the server does (features, one walk of the compiled "
            "trees for probability and explanation, bands, floors), this machine: "
            + "; ".join(
                f"{size} alarm{'s' if size > 1 else ''}: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
                for size, (p50, p99) in serving.items()
            )
            + ".",
        ]
    for e in evaluations:
        slug = e.name.replace(" ", "-")
        _plots(out, slug, e)
        lines += [
            "",
            f"## {e.name}",
            "",
            f"![calibration]({slug}-calibration.png) ![precision-recall]({slug}-pr.png)",
            f"![confusion]({slug}-confusion.png) ![split]({slug}-split.png)",
            "",
            "Severity split (share of alarms, collision rate within 30 min, share of all "
            "pre-collision alarms):",
            "",
            "| band | rules: share | rules: rate | rules: catch | model: share | model: rate | "
            "model: catch |",
            "|---|---|---|---|---|---|---|",
        ]
        for sev in SEVERITIES:
            r, m = e.split["rules"][sev], e.split["model"][sev]
            lines.append(
                f"| {sev} | {_pct(r['share'])} | {_pct(r['positive_rate'])} | "
                f"{_pct(r['catch'])} | {_pct(m['share'])} | {_pct(m['positive_rate'])} | "
                f"{_pct(m['catch'])} |"
            )
        lines += ["", "Rules (rows) against model (columns):", "", "| | " + " | ".join(SEVERITIES)
                  + " |", "|---|---|---|---|"]  # fmt: skip
        for sev, row in zip(SEVERITIES, e.confusion, strict=True):
            lines.append(f"| {sev} | " + " | ".join(str(v) for v in row) + " |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plots(out: Path, slug: str, e: Evaluation) -> None:
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    pred, obs = reliability(e.proba, e.label)
    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(float(pred.max()), float(obs.max())) * 1.05
    ax.plot([0, top], [0, top], "k:", label="perfect")
    ax.plot(pred, obs, "o-", label=f"model (ECE {e.ece:.4f})")
    ax.set(xlabel="predicted probability", ylabel="observed collision rate",
           title=f"Calibration, {e.name}")  # fmt: skip
    ax.legend()
    fig.savefig(out / f"{slug}-calibration.png", dpi=90, bbox_inches="tight")
    plt.close(fig)

    precision, recall, _ = precision_recall_curve(e.label, e.proba)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label="model")
    for level, marker in ((1, "s"), (2, "^")):
        sel = e.rules >= level
        if sel.any():
            ax.plot(float(e.label[sel].sum() / max(e.label.sum(), 1)),
                    float(e.label[sel].mean()), marker, markersize=9,
                    label=f"rules: {SEVERITIES[level]} and above")  # fmt: skip
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall, {e.name}")
    ax.set_yscale("log")
    ax.legend()
    fig.savefig(out / f"{slug}-pr.png", dpi=90, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    grid = np.array(e.confusion, dtype=np.float64)
    ax.imshow(np.log1p(grid), cmap="Blues")
    for i in range(3):
        for j in range(3):
            ax.text(j, i, str(int(grid[i, j])), ha="center", va="center")
    ax.set_xticks(range(3), SEVERITIES)
    ax.set_yticks(range(3), SEVERITIES)
    ax.set(xlabel="model", ylabel="rules", title=f"Severity, rules × model, {e.name}")
    fig.savefig(out / f"{slug}-confusion.png", dpi=90, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    x = np.arange(3)
    for ax, key, title in ((axes[0], "share", "share of alarms"),
                           (axes[1], "catch", "share of pre-collision alarms")):  # fmt: skip
        ax.bar(x - 0.2, [e.split["rules"][s][key] for s in SEVERITIES], 0.4, label="rules")
        ax.bar(x + 0.2, [e.split["model"][s][key] for s in SEVERITIES], 0.4, label="model")
        ax.set_xticks(x, SEVERITIES)
        ax.set_title(title)
        ax.legend()
    fig.suptitle(f"Severity split, {e.name}")
    fig.savefig(out / f"{slug}-split.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
