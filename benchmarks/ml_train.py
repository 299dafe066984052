"""Severity model: training time on one million synthetic alarms, and the p99 latency of
one vectorised predict (features included, from GradingInput) per micro-batch.

    .venv/bin/python benchmarks/ml_train.py [--rows 1000000] [--repeats 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ml.model import train
from ml.synth import generate


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
    rng = np.random.default_rng(3)
    for size in (1, 16, 256):
        predict: list[float] = []
        explain: list[float] = []
        for r in range(args.repeats):
            lo = int(rng.integers(0, len(inputs) - size))
            batch = inputs[lo : lo + size]
            t = time.perf_counter()
            proba = model.predict_proba(batch)
            model.severity_bands(proba)
            predict.append(time.perf_counter() - t)
            if r < args.repeats // 10:
                t = time.perf_counter()
                model.explain(batch)
                explain.append(time.perf_counter() - t)
        print(
            f"batch {size:>3}: predict + bands p50 {np.median(predict) * 1000:.2f} ms, "
            f"p99 {_p99_ms(predict):.2f} ms; explain p99 {_p99_ms(explain):.2f} ms"
        )


if __name__ == "__main__":
    main()
