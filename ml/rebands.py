"""Severity bands re-chosen on a deployment's own alarms.

Bands are quantiles of the probabilities of the alarms a model was trained on, so they
meet the alert budget on that fleet. A deployment's alarms can be riskier or tamer on
average: on the live simulator the synthetic fleet's bands put 93.3 / 6.7 / 0.05 % in
general / moderate / severe instead of 85 / 15 / 0.1 %. Every alarm the model graded
stores its probability, so the same quantile rule (:func:`ml.model.choose_bands`) over
the deployment's recent alarms gives its own bands. They are saved as a new version of
the same trees and calibration (``scores_as`` names the version whose scores it shares)
and activated; the servers pick it up at their next poll, without a restart.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray

from ml.model import Bands, Budget, choose_bands
from ml.registry import list_versions, load_model, read_metadata, save_model
from telematics.errors import ConfigError

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Rebanded:
    version: str  # the new version
    source: str  # the version it was re-banded from
    alarms: int  # how many alarms chose the bands
    before: tuple[float, float, float]  # shares general / moderate / severe, old bands
    after: tuple[float, float, float]  # the same alarms under the new bands
    bands: Bands


def scores_as(meta: dict[str, Any]) -> str:
    """The version whose trees and calibration this one uses (itself unless re-banded)."""
    return str(meta.get("scores_as") or meta["version"])


def same_scores(directory: Path, version: str) -> list[str]:
    """Every registered version that gives an alarm the same probability as ``version``."""
    root = scores_as(read_metadata(directory, version))
    same = []
    for other in list_versions(directory):
        try:
            if scores_as(read_metadata(directory, other)) == root:
                same.append(other)
        except (OSError, ValueError, KeyError):
            continue  # unreadable metadata: not a version anything was graded by
    return same


async def graded_probabilities(
    conn: asyncpg.Connection, versions: list[str], since: datetime
) -> F64:
    """Probabilities stored with the alarms these versions graded since ``since``."""
    rows = await conn.fetch(
        """SELECT probability FROM alarms
           WHERE model_version = ANY($1::text[]) AND probability IS NOT NULL
             AND first_ts >= $2""",
        versions,
        since,
    )
    return np.array([r["probability"] for r in rows], dtype=np.float64)


def shares(bands: Bands, proba: F64) -> tuple[float, float, float]:
    counts = np.bincount(bands.codes(proba), minlength=3)
    total = max(len(proba), 1)
    return (counts[0] / total, counts[1] / total, counts[2] / total)


def reband(
    directory: Path,
    source: str,
    proba: F64,
    budget: Budget,
    data: dict[str, Any],
    *,
    min_alarms: int,
    activate: bool = True,
) -> Rebanded:
    """Save ``source`` with bands chosen on ``proba`` as a new version (the active one
    unless ``activate`` is false)."""
    loaded = load_model(directory, source)
    if loaded is None:
        raise ConfigError(f"the model {source} cannot be loaded (see the log)")
    if len(proba) < min_alarms:
        raise ConfigError(
            f"only {len(proba)} alarms graded by {source} (or versions scoring like it) "
            f"in the window; at least {min_alarms} are needed to choose bands"
        )
    meta = read_metadata(directory, source)
    model = copy.copy(loaded.model)  # shares the trees; only the bands change
    model.bands = choose_bands(proba, budget)
    version = save_model(
        directory,
        model,
        {
            "data": meta.get("data", {}),
            "scores_as": scores_as(meta),
            "rebanded_from": source,
            "bands_data": {**data, "alarms": len(proba)},
            "budget": {"moderate": budget.moderate, "severe": budget.severe},
        },
        activate=activate,
    )
    return Rebanded(
        version=version,
        source=source,
        alarms=len(proba),
        before=shares(loaded.model.bands, proba),
        after=shares(model.bands, proba),
        bands=model.bands,
    )
