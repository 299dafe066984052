"""``telematics ml``: dataset, train, evaluate, rebands, list, activate.

Wired into ``telematics.cli`` by :func:`add_ml_parser`; each command is called as
``func(args, settings)`` like every other one and raises ``TelematicsError`` on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from telematics.cliargs import iso_datetime, positive_float, positive_int, share
from telematics.config import Settings
from telematics.errors import ConfigError, TelematicsError

if TYPE_CHECKING:
    from ml.model import Budget

DEFAULT_SYNTHETIC = 1_000_000
HELD_OUT = 50_000  # rows of each held-out set; the evaluation grades them by the rules too


def add_ml_parser(subparsers: Any) -> None:
    """Register ``ml`` on the top-level ``add_subparsers()`` object."""
    ml = subparsers.add_parser("ml", help="severity model: dataset, train, evaluate")
    sub = ml.add_subparsers(dest="ml_command", required=True)

    ds = sub.add_parser("dataset", help="labelled alarms from the database, as CSV")
    ds.add_argument(
        "--since", type=iso_datetime, required=True, help="ISO 8601, first alarm included"
    )
    ds.add_argument(
        "--until", type=iso_datetime, default=None, help="ISO 8601, exclusive (default now)"
    )
    ds.add_argument(
        "--horizon-min", type=positive_float, default=30.0, help="label horizon (default 30)"
    )
    ds.add_argument("--lookback-h", type=float, default=12.0,
                    help="history replayed before --since (default 12)")  # fmt: skip
    ds.add_argument("--fleet", help="only this fleet's vehicles")
    ds.add_argument("--out", type=Path, required=True, help="CSV file to write")
    ds.set_defaults(func=cmd_dataset)

    tr = sub.add_parser("train", help="fit, calibrate and register a model")
    src = tr.add_mutually_exclusive_group()
    src.add_argument("--synthetic", type=positive_int, metavar="N", help=f"generated alarms "
                     f"(the default, N={DEFAULT_SYNTHETIC})")  # fmt: skip
    src.add_argument("--data", type=Path, help="a CSV from `ml dataset`")
    tr.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    tr.add_argument("--moderate", type=share, default=0.15, help="moderate share (0.15)")
    tr.add_argument("--severe", type=share, default=0.001, help="severe share (0.001)")
    tr.add_argument("--model-dir", type=Path, help="default TELEMATICS_MODEL_DIR")
    tr.add_argument("--no-activate", action="store_true", help="register without activating")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="report: the model against the rules, held out")
    ev.add_argument("--version", help="default: the active one")
    ev.add_argument("--model-dir", type=Path, help="default TELEMATICS_MODEL_DIR")
    ev.add_argument("--data", type=Path, help="evaluate on this CSV instead of generated sets")
    ev.add_argument("--rows", type=positive_int, default=HELD_OUT, help="rows per generated set")
    ev.add_argument("--seed", type=int, default=None,
                    help="held-out seed (default: the training seed + 1000)")  # fmt: skip
    ev.add_argument("--out", type=Path, help="report directory (default var/reports/VERSION)")
    ev.set_defaults(func=cmd_evaluate)

    rb = sub.add_parser("rebands", help="bands re-chosen on this deployment's recent alarms")
    rb.add_argument("--days", type=positive_float, default=7.0,
                    help="alarms raised in the last N days (default 7)")  # fmt: skip
    rb.add_argument("--min-alarms", type=positive_int, default=1000,
                    help="refuse with fewer graded alarms (default 1000)")  # fmt: skip
    rb.add_argument("--moderate", type=share, default=0.15, help="moderate share (0.15)")
    rb.add_argument("--severe", type=share, default=0.001, help="severe share (0.001)")
    rb.add_argument("--model-dir", type=Path, help="default TELEMATICS_MODEL_DIR")
    rb.add_argument("--no-activate", action="store_true", help="register without activating")
    rb.set_defaults(func=cmd_rebands)

    ls = sub.add_parser("list", help="registered model versions")
    ls.add_argument("--model-dir", type=Path)
    ls.set_defaults(func=cmd_list)
    act = sub.add_parser("activate", help="make a registered version the active one")
    act.add_argument("version")
    act.add_argument("--model-dir", type=Path)
    act.set_defaults(func=cmd_activate)


def _model_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return args.model_dir if args.model_dir is not None else settings.model_dir


def _budget(args: argparse.Namespace) -> Budget:
    from ml.model import Budget

    if args.moderate + args.severe >= 1:  # Budget itself calls that a bug (UsageError)
        raise ConfigError("--moderate + --severe must be below 1 (the rest is general)")
    return Budget(args.moderate, args.severe)


def cmd_dataset(args: argparse.Namespace, settings: Settings) -> int:
    from ml.dataset import export_dataset
    from ml.rows import write_csv
    from telematics.store.database import run_with_db

    until = args.until or datetime.now(UTC)
    if until <= args.since:
        raise ConfigError("--until must be after --since")
    # refuse an --out that cannot be written before the export's queries, not after
    if args.out.is_dir() or not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: not a file in an existing directory")
    rows, unmatched = run_with_db(
        settings,
        lambda conn: export_dataset(
            conn, args.since, until, horizon=timedelta(minutes=args.horizon_min),
            lookback=timedelta(hours=args.lookback_h), fleet=args.fleet,
        ),
    )  # fmt: skip
    try:
        n = write_csv(args.out, rows)
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot write ({exc.strerror or exc})") from None
    positives = sum(r.label for r in rows)
    print(f"wrote {n} alarms ({positives} followed by a collision) to {args.out}"
          + (f"; {unmatched} alarms had no stored items to replay" if unmatched else ""),
          file=sys.stderr)  # fmt: skip
    return 0


def _load_csv(path: Path) -> tuple[Any, np.ndarray[Any, np.dtype[np.bool_]], dict[str, Any]]:
    from ml.features import columns_from_inputs
    from ml.rows import read_csv

    rows = read_csv(path)
    if not rows:
        raise ConfigError(f"{path}: no rows")
    cols = columns_from_inputs([r.input for r in rows])
    label = np.array([r.label for r in rows], dtype=np.bool_)
    stamps = [r.input.ts for r in rows]
    data = {"source": str(path), "from": min(stamps).isoformat(), "to": max(stamps).isoformat()}
    return cols, label, data


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from ml.model import train
    from ml.registry import save_model
    from ml.synth import generate

    if args.data is not None:
        cols, label, data = _load_csv(args.data)
    else:
        n = args.synthetic or DEFAULT_SYNTHETIC
        alarms = generate(n, args.seed)
        cols, label = alarms.columns, alarms.label
        data = {"source": "synthetic", "rows": n, "seed": args.seed,
                "from": datetime.fromtimestamp(float(cols.ts.min()), UTC).isoformat(),
                "to": datetime.fromtimestamp(float(cols.ts.max()), UTC).isoformat()}  # fmt: skip
    model = train(cols, label, _budget(args))
    version = save_model(_model_dir(args, settings), model, {"data": data},
                         activate=not args.no_activate)  # fmt: skip
    info = model.info
    print(f"{version}: {info['rows']} alarms, {info['positives']} positive, "
          f"{info['train_seconds']} s; bands moderate ≥ {model.bands.moderate_at:.4f}, "
          f"severe ≥ {model.bands.severe_at:.4f}"
          + ("" if args.no_activate else " (active)"), file=sys.stderr)  # fmt: skip
    print(version)
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from ml.evaluate import evaluate, serving_times, write_report
    from ml.registry import active_version, load_model, read_metadata
    from ml.synth import FleetMix, generate

    directory = _model_dir(args, settings)
    version = args.version or active_version(directory)
    if version is None:
        raise ConfigError(f"no active model in {directory}; train one or pass --version")
    loaded = load_model(directory, version)
    if loaded is None:
        raise TelematicsError(f"model {version} in {directory} is not usable (see the log)")
    meta = read_metadata(directory, version)
    if args.data is not None:
        cols, label, _ = _load_csv(args.data)
        evaluations = [evaluate(args.data.name, loaded.model, cols, label)]
        sample = cols.take(slice(0, 2000)).to_inputs()
    else:
        seed = args.seed if args.seed is not None else int(meta["data"].get("seed", 1)) + 1000
        held = generate(args.rows, seed)
        shifted = generate(args.rows, seed + 1, FleetMix().shifted())
        evaluations = [
            evaluate(f"seed {seed}", loaded.model, held.columns, held.label, held.true_p),
            evaluate(
                f"shifted fleet seed {seed + 1}",
                loaded.model,
                shifted.columns,
                shifted.label,
                shifted.true_p,
            ),
        ]
        sample = held.columns.take(slice(0, 2000)).to_inputs()
    out = args.out or settings.data_dir / "reports" / version
    path = write_report(out, version, meta, evaluations, serving_times(loaded.model, sample))
    (out / "metrics.json").write_text(
        json.dumps([e.summary() for e in evaluations], indent=2) + "\n"
    )
    for e in evaluations:
        print(f"{e.name}: rules catch {100 * e.rules_catch:.1f} % with "
              f"{100 * e.rules_share:.1f} % alerted; model at that budget "
              f"{100 * e.model_catch_same_budget:.1f} %; ECE {e.ece:.4f}",
              file=sys.stderr)  # fmt: skip
    print(path)
    return 0


def cmd_rebands(args: argparse.Namespace, settings: Settings) -> int:
    from ml.rebands import graded_probabilities, reband, same_scores
    from ml.registry import active_version
    from telematics.store.database import run_with_db

    directory = _model_dir(args, settings)
    active = active_version(directory)
    if active is None:
        raise ConfigError(f"no active severity model in {directory}")
    budget = _budget(args)
    until = datetime.now(UTC)
    since = until - timedelta(days=args.days)
    versions = same_scores(directory, active)
    proba = run_with_db(settings, lambda conn: graded_probabilities(conn, versions, since))
    data = {"source": "alarms", "from": since.isoformat(), "to": until.isoformat()}
    done = reband(directory, active, proba, budget, data, min_alarms=args.min_alarms,
                  activate=not args.no_activate)  # fmt: skip

    def split(s: tuple[float, float, float]) -> str:
        return " / ".join(f"{100 * x:.2f}" for x in s)

    print(f"{done.version}: bands from {done.alarms} alarms graded since "
          f"{since:%Y-%m-%d %H:%M} UTC; moderate ≥ {done.bands.moderate_at:.4f}, "
          f"severe ≥ {done.bands.severe_at:.4f}; general / moderate / severe % on them: "
          f"{split(done.before)} with {done.source}'s bands, {split(done.after)} now"
          + ("" if args.no_activate else " (active)"), file=sys.stderr)  # fmt: skip
    print(done.version)
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from ml.registry import active_version, list_versions

    directory = _model_dir(args, settings)
    active = active_version(directory)
    for version in list_versions(directory):
        print(f"{'*' if version == active else ' '} {version}")
    return 0


def cmd_activate(args: argparse.Namespace, settings: Settings) -> int:
    from ml.registry import activate_version

    activate_version(_model_dir(args, settings), args.version)
    return 0
