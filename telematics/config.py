"""Settings, read once from ``TELEMATICS_*`` environment variables.

Every setting is documented in the README's Settings table; keep the two in step.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from telematics.errors import ConfigError


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """The JSON object in a policy or settings file; a ``ConfigError`` naming ``what`` and
    the file if it cannot be read, is not JSON or is not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: top level must be a JSON object")
    return data


def _env_int(name: str, default: int, low: int = 1, high: int | None = None) -> int:
    """An integer setting in ``[low, high]``: a count or size of zero or less is a typo
    that would otherwise surface later as a hang or a crash far from its cause."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name}: must be {bounds}, got {value}")
    return value


def env_float(name: str, default: float, *, zero_ok: bool = False) -> float:
    """A positive (or zero, if ``zero_ok``) finite number; ``nan`` and ``inf`` parse too."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        least = "zero or more" if zero_ok else "a positive number"
        raise ConfigError(f"{name}: must be {least}, got {raw!r}")
    return value


def _env_log_level(name: str, default: str) -> str:
    raw = os.environ.get(name) or default
    if not isinstance(logging.getLevelName(raw.upper()), int):
        raise ConfigError(f"{name}: must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None → embedded PostgreSQL in data_dir/pg
    data_dir: Path = field(default_factory=lambda: Path("var"))
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    policy_file: str | None = None  # risk policy (classify/policy.json unless set)
    escalation_file: str | None = None  # interventions policy (intervene/escalation.json)
    stale_after_s: float = 120.0  # an alarm from an older item is late: no in-cab alert
    max_pending_items: int = 20_000  # writer backlog before ingest stops reading sockets
    max_flush_items: int = 10_000
    flush_interval_ms: float = 75.0  # floor between commits: bigger batches, fewer round trips
    db_pool_size: int = 4
    idle_timeout_s: float = 60.0
    ping_interval_s: float = 20.0
    intervention_resend_s: float = 5.0
    intervention_expire_s: float = 3600.0
    max_frames_per_s: float = 200.0  # per unit; above it the server reads slower and says so
    frame_burst: float = 2_000.0
    garbage_limit: int = 50  # consecutive bad frames before closing with 1008
    log_level: str = "INFO"
    map_tiles: str = ""  # dashboard tile URL template ({z}/{x}/{y}); empty: no basemap
    map_attribution: str = ""
    live_ping_s: float = 10.0  # the dashboard pings its live socket; silent 1.5x as long: dead
    cookie_secure: bool = True  # the session cookie only over HTTPS (and http://localhost)
    model_dir: Path = field(default_factory=lambda: Path("var/models"))  # severity models

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def load_settings() -> Settings:
    """Read settings from the environment (unset → defaults)."""
    env = os.environ.get
    return Settings(
        database_url=env("TELEMATICS_DATABASE_URL") or None,
        data_dir=Path(env("TELEMATICS_DATA_DIR") or "var"),
        host=env("TELEMATICS_HOST") or "127.0.0.1",
        port=_env_int("TELEMATICS_PORT", 8080, low=0, high=65535),
        workers=_env_int("TELEMATICS_WORKERS", 1),
        policy_file=env("TELEMATICS_POLICY_FILE") or None,
        escalation_file=env("TELEMATICS_ESCALATION_FILE") or None,
        stale_after_s=env_float("TELEMATICS_STALE_AFTER_S", 120.0),
        max_pending_items=_env_int("TELEMATICS_MAX_PENDING_ITEMS", 20_000),
        max_flush_items=_env_int("TELEMATICS_MAX_FLUSH_ITEMS", 10_000),
        flush_interval_ms=env_float("TELEMATICS_FLUSH_INTERVAL_MS", 75.0, zero_ok=True),
        db_pool_size=_env_int("TELEMATICS_DB_POOL_SIZE", 4),
        idle_timeout_s=env_float("TELEMATICS_IDLE_TIMEOUT_S", 60.0),
        ping_interval_s=env_float("TELEMATICS_PING_INTERVAL_S", 20.0),
        intervention_resend_s=env_float("TELEMATICS_INTERVENTION_RESEND_S", 5.0),
        intervention_expire_s=env_float("TELEMATICS_INTERVENTION_EXPIRE_S", 3600.0),
        max_frames_per_s=env_float("TELEMATICS_MAX_FRAMES_PER_S", 200.0),
        frame_burst=env_float("TELEMATICS_FRAME_BURST", 2_000.0),
        garbage_limit=_env_int("TELEMATICS_GARBAGE_LIMIT", 50),
        log_level=_env_log_level("TELEMATICS_LOG_LEVEL", "INFO"),
        map_tiles=env("TELEMATICS_MAP_TILES") or "",
        map_attribution=env("TELEMATICS_MAP_ATTRIBUTION") or "",
        live_ping_s=env_float("TELEMATICS_LIVE_PING_S", 10.0),
        cookie_secure=(env("TELEMATICS_COOKIE_SECURE") or "true").lower() not in ("0", "false"),
        model_dir=Path(env("TELEMATICS_MODEL_DIR") or "var/models"),
    )
