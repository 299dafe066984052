"""Small trained severity models in a registry directory, for tests that serve one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ml.model import SeverityModel, TrainParams, train
from ml.registry import save_model
from ml.synth import generate
from tests.helpers import RunningServer, start_server


def small_model(seed: int = 21, rows: int = 20_000) -> SeverityModel:
    alarms = generate(rows, seed=seed)
    return train(alarms.columns, alarms.label, params=TrainParams(max_iter=20))


def register(directory: Path, model: SeverityModel, seed: int = 21, activate: bool = True) -> str:
    """Save ``model`` as a new version (the active one unless told otherwise)."""
    return save_model(
        directory, model, {"data": {"source": "synthetic", "seed": seed}}, activate=activate
    )


@asynccontextmanager
async def server_grading_by(
    db_url: str, directory: Path, model: SeverityModel
) -> AsyncIterator[tuple[RunningServer, str]]:
    """A real server whose active model is ``model`` (registered in ``directory``)."""
    version = register(directory, model)
    server = await start_server(db_url, model_dir=directory)
    try:
        yield server, version
    finally:
        await server.stop()
