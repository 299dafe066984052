"""Registry: round trip, the active pointer, and every broken model falls back (None)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import joblib
import numpy as np
import pytest

from ml.model import TrainParams, train
from ml.registry import (
    ACTIVE,
    META_FILE,
    MODEL_FILE,
    activate_version,
    active_version,
    list_versions,
    load_active_model,
    save_model,
)
from ml.synth import generate


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    alarms = generate(20_000, seed=21)
    model = train(alarms.columns, alarms.label, params=TrainParams(max_iter=20))
    directory = tmp_path_factory.mktemp("models")
    version = save_model(directory, model, {"data": {"source": "synthetic", "seed": 21}})
    return directory, version


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        if p.is_dir():
            (dst / p.name).mkdir()
            for f in p.iterdir():
                (dst / p.name / f.name).write_bytes(f.read_bytes())
        else:
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_round_trip(saved: tuple[Path, str]) -> None:
    directory, version = saved
    assert active_version(directory) == version
    assert list_versions(directory) == [version]
    loaded = load_active_model(directory)
    assert loaded is not None and loaded.version == version
    meta = json.loads((directory / version / META_FILE).read_text())
    assert meta["data"]["seed"] == 21 and meta["features"][0] == "kind"
    inputs = generate(64, seed=22).columns.to_inputs()
    proba = loaded.predict_proba(inputs)
    original = joblib.load(directory / version / MODEL_FILE)
    np.testing.assert_array_equal(proba, original.predict_proba(inputs))
    assert set(loaded.severity_bands(proba)) <= {"general", "moderate", "severe"}
    assert len(loaded.explain(inputs[:4])) == 4


def test_missing_model_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "ml.registry"):
        assert load_active_model(tmp_path / "nothing") is None
    assert "grading by the rules" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "garbage", "features", "pointer", "wrong_type"])
def test_broken_model_falls_back(
    saved: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    directory = _copy(saved[0], tmp_path / "models")
    version = saved[1]
    model_file, meta_file = directory / version / MODEL_FILE, directory / version / META_FILE
    meta = json.loads(meta_file.read_text())
    if damage == "truncated":
        model_file.write_bytes(model_file.read_bytes()[:100])
    elif damage == "garbage":  # consistent hash, but not a pickle
        model_file.write_bytes(b"not a pickle")
        import hashlib

        meta["sha256"] = hashlib.sha256(b"not a pickle").hexdigest()
        meta_file.write_text(json.dumps(meta))
    elif damage == "features":
        meta["features"] = meta["features"][:-1]
        meta_file.write_text(json.dumps(meta))
    elif damage == "pointer":
        (directory / ACTIVE).write_text("no-such-version\n")
    elif damage == "wrong_type":
        joblib.dump({"not": "a model"}, model_file)
        import hashlib

        meta["sha256"] = hashlib.sha256(model_file.read_bytes()).hexdigest()
        meta_file.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, "ml.registry"):
        assert load_active_model(directory) is None
    assert "grading by the rules" in caplog.text


def test_activate_checks_the_version(saved: tuple[Path, str], tmp_path: Path) -> None:
    from telematics.errors import ConfigError

    directory = _copy(saved[0], tmp_path / "models")
    with pytest.raises(ConfigError):
        activate_version(directory, "sev-missing")
    activate_version(directory, saved[1])
    assert active_version(directory) == saved[1]
