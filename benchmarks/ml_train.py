"""Severity model: training time on one million synthetic alarms, and the time the server
spends grading one micro-batch with it (``ModelGrader.grade_many``: features from
GradingInput, one tree evaluation for probabilities and explanations, bands, floors).

    .venv/bin/python benchmarks/ml_train.py [--rows 1000000] [--repeats 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ml.grader import ModelGrader
from ml.model import train
from ml.registry import LoadedModel
from ml.synth import generate
from telematics.classify.context import RulesGrader
from telematics.classify.risk_policy import load_policy


def _p99_ms(samples: list[float]) -> float:
    return float(np.percentile(samples, 99)) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()

    started = time.perf_counter()
    alarms = generate(args.rows, seed=1)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    model = train(alarms.columns, alarms.label)
    trained = time.perf_counter() - started
    print(f"generate {args.rows} alarms: {generated:.1f} s")
    print(f"train on {args.rows} alarms: {trained:.1f} s "
          f"({model.info['iterations']} boosting iterations)")  # fmt: skip

    inputs = generate(300_000, seed=2).columns.to_inputs()
    grader = ModelGrader(LoadedModel("bench", {}, model), load_policy())
    rules = RulesGrader(load_policy())
    rng = np.random.default_rng(3)
    print("one micro-batch as the server grades it (features, predict, bands, floors,")
    print("explanations, reason text), against the rules alone on the same batch:")
    for size in (1, 2, 4, 8, 16, 64):
        served: list[float] = []
        by_rules: list[float] = []
        for _ in range(args.repeats):
            lo = int(rng.integers(0, len(inputs) - size))
            batch = inputs[lo : lo + size]
            t = time.perf_counter()
            grader.grade_many(batch)
            served.append(time.perf_counter() - t)
            t = time.perf_counter()
            rules.grade_many(batch)
            by_rules.append(time.perf_counter() - t)
        print(
            f"batch {size:>3}: model p50 {np.median(served) * 1000:.2f} ms, "
            f"p99 {_p99_ms(served):.2f} ms; rules p99 {_p99_ms(by_rules):.2f} ms; "
            f"added p99 {_p99_ms(served) - _p99_ms(by_rules):.2f} ms"
        )


if __name__ == "__main__":
    main()
