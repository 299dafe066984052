"""Typed device messages: what the decoder hands to the rest of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

DSM_KINDS = (
    "fatigue",
    "yawning",
    "phone_call",
    "smoking",
    "distraction",
    "driver_absent",
    "camera_blocked",
    "seatbelt_off",
)
ADAS_KINDS = (
    "forward_collision",
    "pedestrian_collision",
    "lane_departure",
    "headway_too_close",
    "frequent_lane_change",
    "road_sign_overspeed",
    "obstacle",
)
BSD_KINDS = ("blind_spot_left", "blind_spot_right", "blind_spot_rear")
DYNAMICS_KINDS = ("harsh_brake", "harsh_accel", "harsh_turn", "overspeed", "collision", "rollover")
TPMS_KINDS = (
    "tire_pressure_high",
    "tire_pressure_low",
    "tire_temp_high",
    "tire_fast_leak",
    "tire_sensor_fault",
)
OTHER_KINDS = ("panic_button",)

#: Every event kind of protocol v1; anything else is an invalid item.
EVENT_KINDS: frozenset[str] = frozenset(
    DSM_KINDS + ADAS_KINDS + BSD_KINDS + DYNAMICS_KINDS + TPMS_KINDS + OTHER_KINDS
)

#: Kinds the server derives from telemetry (tire slope leaks are not in v1's device list).
DERIVED_KINDS: frozenset[str] = frozenset(
    {
        "tire_pressure_high",
        "tire_pressure_low",
        "tire_temp_high",
        "tire_fast_leak",
        "tire_slow_leak",
        # derived-only, no device kind exists for them in v1
        *("tire_imbalance", "driving_time", "hazmat_restricted_zone"),
        # raised by the alarm timer, not by an item: nothing arrived (telematics/silence.py)
        "unit_silent",
    }
)

INTERVENTION_STATUSES = ("delivered", "played", "driver_confirmed")
SEVERITIES = ("general", "moderate", "severe")


@dataclass(slots=True)  # not frozen: frozen __init__ costs a setattr call per field
class TireReading:
    pos: str
    kpa: float | None
    temp_c: float | None
    sensor_battery_pct: float | None


@dataclass(slots=True)  # not frozen: frozen __init__ costs a setattr call per field
class Telemetry:
    seq: int
    ts: datetime
    lat: float
    lon: float
    speed_kmh: float
    heading_deg: float | None
    driver_id: str | None
    ignition: bool | None
    odometer_km: float | None
    tires: tuple[TireReading, ...]
    extra: dict[str, Any] | None  # optional fields this server version does not model


@dataclass(slots=True)  # not frozen: frozen __init__ costs a setattr call per field
class DeviceEvent:
    seq: int
    ts: datetime
    kind: str
    level: int | None
    lat: float
    lon: float
    speed_kmh: float
    driver_id: str | None
    attrs: dict[str, Any] | None
    extra: dict[str, Any] | None


DataItem = Telemetry | DeviceEvent


@dataclass(slots=True)  # not frozen: frozen __init__ costs a setattr call per field
class InterventionAck:
    id: str
    status: str


@dataclass(slots=True)  # not frozen: frozen __init__ costs a setattr call per field
class Rejection:
    """An item or frame the server will not take; kept raw for inspection."""

    code: str
    message: str
    raw: bytes
    seq: int | None = None


Decoded = DataItem | Rejection | InterventionAck  # what decoding a frame yields
