"""Tire thresholds, the alarm cool-down and alarm keys.

:class:`Rules` is the validated container of the tire thresholds, ``cooldown_s`` and the
policy ``version``. It is built from the one versioned risk policy
(``telematics/classify/policy.json``, via :meth:`RiskPolicy.tire_rules`) and read by the
tire monitor; its defaults equal that file's thresholds. The severity of every alarm
kind lives in ``policy.json`` and is decided by
:class:`telematics.classify.context.RulesGrader`, not here. :func:`event_key` is how a
device event is keyed as an alarm (per tire for TPMS kinds).

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

from telematics.errors import ConfigError
from telematics.protocol.messages import TPMS_KINDS, DeviceEvent

_TIRE_POS = re.compile(r"[1-9][0-9]?[LR][OI]?\Z")  # same shape the decoder accepts in telemetry


@dataclass(frozen=True)
class Rules:
    """Tire thresholds and the cool-down; every instance is validated on construction."""

    version: str = "2026-11-v1"
    low_pressure_ratio: float = 0.786  # 110/140 psi of the 苏标 default → general
    low_pressure_moderate_ratio: float = 0.70
    high_pressure_ratio: float = 1.35  # 189/140 psi
    high_temp_c: float = 80.0  # moderate
    severe_temp_c: float = 100.0  # severe
    slow_leak_kpa_per_min: float = 1.0  # cold-compensated slope over leak_window_s → general
    leak_window_s: float = 600.0
    slow_leak_min_span_s: float = 300.0
    fast_leak_kpa_per_min: float = 20.0  # OEM TPMS leak warning; moderate, severe at speed
    fast_leak_window_s: float = 60.0
    fast_leak_severe_speed_kmh: float = 60.0
    clear_margin: float = 0.03  # fraction of a threshold a value must be back inside to clear
    cooldown_s: float = 300.0  # repeats of the same alarm key within this are grouped

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version:
            raise ConfigError("version: must be a non-empty string")
        for f in fields(self):
            if f.name == "version":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{f.name}: must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{f.name}: must be a finite number ≥ 0, got {value!r}")
        self._check_order()

    def _check_order(self) -> None:
        checks = (
            (
                0 < self.low_pressure_moderate_ratio < self.low_pressure_ratio < 1,
                "need 0 < low_pressure_moderate_ratio < low_pressure_ratio < 1",
            ),
            (self.high_pressure_ratio > 1, "high_pressure_ratio: must be > 1"),
            (self.high_temp_c < self.severe_temp_c, "need high_temp_c < severe_temp_c"),
            (self.slow_leak_kpa_per_min > 0, "slow_leak_kpa_per_min: must be > 0"),
            (
                self.fast_leak_kpa_per_min > self.slow_leak_kpa_per_min,
                "need fast_leak_kpa_per_min > slow_leak_kpa_per_min",
            ),
            (
                0 < self.slow_leak_min_span_s <= self.leak_window_s,
                "need 0 < slow_leak_min_span_s <= leak_window_s",
            ),
            (
                10 <= self.fast_leak_window_s <= self.leak_window_s,
                "need 10 <= fast_leak_window_s <= leak_window_s",
            ),
            (self.clear_margin < 0.5, "clear_margin: must be < 0.5"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def event_key(event: DeviceEvent) -> tuple[str, str | None]:
    """Alarm key and tire position of a device event (TPMS kinds are per tire)."""
    pos = (event.attrs or {}).get("pos")
    if event.kind in TPMS_KINDS and isinstance(pos, str) and _TIRE_POS.match(pos):
        return f"{event.kind}:{pos}", pos
    return event.kind, None
