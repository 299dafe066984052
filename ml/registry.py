"""Versioned models on disk, an ``ACTIVE`` pointer, and a loader that never raises.

Layout (default ``var/models/``, ``TELEMATICS_MODEL_DIR``)::

    ACTIVE                       the active version's name, one line
    <version>/model.joblib       the pickled SeverityModel (trusted input: it is a pickle)
    <version>/model.json         metadata: version, created, training data, metrics,
                                 feature list, bands, the model file's SHA-256

A version directory is written under a temporary name and renamed when complete, and
``ACTIVE`` is replaced atomically, so a server polling it (hot reload) never sees half a
model. :func:`load_active_model` returns ``None`` and logs why when there is no usable
model; the server then grades by the rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from numpy.typing import NDArray

from ml.features import FEATURE_NAMES
from ml.model import SeverityModel
from telematics.errors import ConfigError

log = logging.getLogger(__name__)

ACTIVE = "ACTIVE"
MODEL_FILE = "model.joblib"
META_FILE = "model.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """An active model ready to serve: see :class:`SeverityModel` for the methods."""

    version: str
    metadata: dict[str, Any]
    model: SeverityModel

    def predict_proba(self, inputs: Any) -> NDArray[np.float64]:
        return self.model.predict_proba(inputs)

    def severity_bands(self, proba: NDArray[np.float64]) -> list[str]:
        return self.model.severity_bands(proba)

    def explain(self, inputs: Any, k: int = 3) -> list[list[str]]:
        return self.model.explain(inputs, k)


def new_version(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"sev-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(
    directory: Path,
    model: SeverityModel,
    metadata: dict[str, Any],
    *,
    version: str | None = None,
    activate: bool = True,
) -> str:
    """Write a new version (and make it the active one); returns its name."""
    version = version or new_version()
    if "/" in version or version.startswith("."):
        raise ConfigError(f"bad model version name {version!r}")
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / version
    if final.exists():
        raise ConfigError(f"model version {version} already exists in {directory}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=directory))
    joblib.dump(model, tmp / MODEL_FILE)
    meta = {
        "format": FORMAT,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": list(FEATURE_NAMES),
        "bands": {"moderate_at": model.bands.moderate_at, "severe_at": model.bands.severe_at},
        "calibration": {"platt_a": model.platt_a, "platt_b": model.platt_b},
        "training": model.info,
        **metadata,
        "sha256": _sha256(tmp / MODEL_FILE),
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tmp.rename(final)
    if activate:
        activate_version(directory, version)
    return version


def activate_version(directory: Path, version: str) -> None:
    if not (directory / version / META_FILE).is_file():
        raise ConfigError(f"no model version {version} in {directory}")
    fd, tmp = tempfile.mkstemp(prefix=".ACTIVE.", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(version + "\n")
    os.replace(tmp, directory / ACTIVE)


def active_version(directory: Path) -> str | None:
    """The active version's name (cheap: a server can poll it to hot-reload)."""
    try:
        name = (directory / ACTIVE).read_text().strip()
    except OSError:
        return None
    return name or None


def list_versions(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if (p / META_FILE).is_file())


def read_metadata(directory: Path, version: str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((directory / version / META_FILE).read_text())
    return meta


def load_model(directory: Path, version: str) -> LoadedModel | None:
    """Load one version; ``None`` (with the reason logged) if it is not usable."""
    loaded = try_load(directory, version)
    return loaded if isinstance(loaded, LoadedModel) else None


def load_active_model(directory: Path) -> LoadedModel | None:
    """The active model, or ``None`` (logged) when there is none or it is not usable."""
    version = active_version(directory)
    if version is None:
        log.info("no active severity model in %s; grading by the rules", directory)
        return None
    return load_model(directory, version)


def try_load(directory: Path, version: str) -> LoadedModel | str:
    """One version, or why it cannot be used (also logged)."""
    where = directory / version
    try:
        meta = read_metadata(directory, version)
    except (OSError, ValueError) as exc:
        problem: str | None = f"unreadable metadata ({exc})"
    else:
        problem = _check_meta(meta, version)
    if problem is None:
        path = where / MODEL_FILE
        try:
            if _sha256(path) != meta.get("sha256"):
                problem = f"{MODEL_FILE} does not match its recorded SHA-256 (damaged or replaced)"
            else:
                model = joblib.load(path)
                problem = _check_model(model)
        except Exception as exc:  # a pickle can fail in any way: none may stop the server
            problem = f"cannot load {MODEL_FILE}: {type(exc).__name__}: {exc}"
    if problem is not None:
        log.warning("model %s: %s; grading by the rules", where, problem)
        return f"model {version}: {problem}"
    log.info("severity model %s loaded", version)
    return LoadedModel(version, meta, model)


def _check_meta(meta: dict[str, Any], version: str) -> str | None:
    if meta.get("format") != FORMAT:
        return f"metadata format {meta.get('format')!r}, this server reads {FORMAT}"
    if meta.get("version") != version:
        return f"metadata names version {meta.get('version')!r}"
    if meta.get("features") != list(FEATURE_NAMES):
        return "trained on a different feature list than this server computes; retrain it"
    return None


def _check_model(model: object) -> str | None:
    if not isinstance(model, SeverityModel):
        return f"{MODEL_FILE} holds a {type(model).__name__}, not a SeverityModel"
    if tuple(model.feature_names) != FEATURE_NAMES:
        return "the model's feature list differs from this server's"
    # one prediction on the baseline row: catches a model that cannot run here
    p = model.proba_matrix(model.baseline[None, :])
    if p.shape != (1,) or not 0.0 <= float(p[0]) <= 1.0:
        return "the model does not predict a probability"
    return None
