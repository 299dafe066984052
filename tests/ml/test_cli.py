"""`telematics ml train / list / evaluate / activate` end to end on a temporary registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.registry import active_version, list_versions
from telematics.cli import main


def test_train_evaluate_list_activate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    trained = []
    for seed in ("1", "2"):
        assert main(["ml", "train", "--synthetic", "20000", "--seed", seed,
                     "--model-dir", str(models)]) == 0  # fmt: skip
        trained.append(active_version(models))  # each new version is activated
    first, second = trained
    assert first != second and set(list_versions(models)) == {first, second}
    capsys.readouterr()
    assert main(["ml", "list", "--model-dir", str(models)]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == sorted([f"  {first}", f"* {second}"])
    assert first is not None
    assert main(["ml", "activate", first, "--model-dir", str(models)]) == 0
    assert active_version(models) == first

    out = tmp_path / "report"
    assert main(["ml", "evaluate", "--model-dir", str(models), "--rows", "5000",
                 "--out", str(out)]) == 0  # fmt: skip
    report = (out / "report.md").read_text()
    assert f"# Severity model {first}: evaluation" in report
    assert "| seed 1001 |" in report and "| shifted fleet seed 1002 |" in report
    assert "Grading one micro-batch as the server does" in report
    assert "8 alarms: p50" in report
    for plot in ("calibration", "pr", "confusion", "split"):
        assert (out / f"seed-1001-{plot}.png").stat().st_size > 1000
