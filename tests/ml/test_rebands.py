"""`telematics ml rebands`: bands re-chosen on the deployment's own graded alarms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from ml.model import Bands
from ml.rebands import same_scores, shares
from ml.registry import active_version, load_model, read_metadata
from tests.helpers import add_vehicle
from tests.models import register, small_model
from tests.test_cli import run_cli


async def _graded(db: asyncpg.Connection, proba: list[float], version: str, age: timedelta,
                  tag: str) -> None:  # fmt: skip
    at = datetime.now(UTC) - age
    n = len(proba)
    await db.execute(
        """INSERT INTO alarms (id, vehicle_id, kind, key, severity, reason, derived,
                               first_seq, first_ts, last_seq, last_ts, lat, lon, speed_kmh,
                               rules_version, probability, model_version)
           SELECT 'a-' || $1 || '-' || i, 'V1', 'fatigue', 'fatigue', 'general', 'test', false,
                  i, $2, i, $2, 31.3, 120.6, 60, 'test', p, $3
           FROM unnest($4::float8[]) WITH ORDINALITY AS t(p, i)""",
        tag, at, version, proba,
    )  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM alarms WHERE id LIKE $1", f"a-{tag}-%") == n


@pytest.fixture
async def registry(db_url: str, tmp_path: Path) -> tuple[Path, str]:
    """A registry whose active version is a small model, and vehicle V1 to raise alarms."""
    models = tmp_path / "models"
    first = register(models, small_model())
    await add_vehicle(db_url, "V1")
    return models, first


async def test_rebands_meets_the_budget_on_recent_alarms_of_the_same_scores(
    db_url: str, db: asyncpg.Connection, registry: tuple[Path, str]
) -> None:
    models, first = registry
    rng = np.random.default_rng(5)
    recent = rng.uniform(0.0, 0.02, 2000)  # tamer than the training fleet
    await _graded(db, recent.tolist(), first, timedelta(hours=2), "recent")
    await _graded(db, [0.9] * 500, "another-model", timedelta(hours=1), "other")
    await _graded(db, [0.5] * 300, first, timedelta(days=30), "old")

    done = run_cli(db_url, "ml", "rebands", "--model-dir", str(models), "--days", "7")
    assert done.returncode == 0, done.stderr
    second = done.stdout.strip()
    assert active_version(models) == second != first
    meta = read_metadata(models, second)
    assert meta["scores_as"] == first and meta["rebanded_from"] == first
    assert meta["bands_data"]["alarms"] == 2000 and meta["bands_data"]["source"] == "alarms"
    loaded = load_model(models, second)
    assert loaded is not None
    # the bands split the probabilities as stored (real: float4) exactly as budgeted
    query = "SELECT array_agg(probability::float8) FROM alarms WHERE id LIKE 'a-recent-%'"
    stored = np.array(await db.fetchval(query))
    general, moderate, severe = shares(loaded.model.bands, stored)
    assert (round(general, 4), round(moderate, 4), round(severe, 4)) == (0.849, 0.15, 0.001)
    old = load_model(models, first)
    assert old is not None and shares(old.model.bands, stored)[0] > 0.9  # why it was needed
    assert "84.90 / 15.00 / 0.10 now" in done.stderr

    # Alarms graded by the re-banded version score like the first: they count next time.
    await _graded(db, rng.uniform(0.5, 0.6, 1000).tolist(), second, timedelta(hours=1), "new")
    assert set(same_scores(models, second)) == {first, second}
    again = run_cli(db_url, "ml", "rebands", "--model-dir", str(models), "--no-activate")
    assert again.returncode == 0, again.stderr
    third = again.stdout.strip()
    assert active_version(models) == second  # registered, not activated
    assert read_metadata(models, third)["scores_as"] == first
    assert read_metadata(models, third)["bands_data"]["alarms"] == 3000


async def test_rebands_refuses_too_few_alarms(
    db_url: str, db: asyncpg.Connection, registry: tuple[Path, str]
) -> None:
    models, first = registry
    await _graded(db, [0.01] * 50, first, timedelta(hours=1), "few")
    done = run_cli(db_url, "ml", "rebands", "--model-dir", str(models))
    assert done.returncode != 0
    assert "only 50 alarms graded by" in done.stderr and "at least 1000" in done.stderr
    assert active_version(models) == first


def test_shares_of_bands() -> None:
    bands = Bands(moderate_at=0.5, severe_at=0.9)
    assert shares(bands, np.array([0.1, 0.2, 0.6, 0.95])) == (0.5, 0.25, 0.25)
