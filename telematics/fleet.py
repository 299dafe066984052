"""Vehicle classes and their default tire layouts and placard pressures.

Tire positions follow the device protocol: axle number (1 = front) + side ``L``/``R``
+ ``O``/``I`` for the outer/inner wheel of a twin. Placard pressures are cold gauge
pressures in kPa for typical 295/80R22.5 (coach, bus) and 12R22.5 (truck) tires.
"""

from __future__ import annotations

from dataclasses import dataclass

VEHICLE_CLASSES: tuple[str, ...] = ("coach", "bus", "hazmat", "freight")

_TWO_AXLE = ("1L", "1R", "2LO", "2LI", "2RI", "2RO")
_THREE_AXLE = (*_TWO_AXLE, "3LO", "3LI", "3RI", "3RO")


@dataclass(frozen=True, slots=True)
class ClassProfile:
    """Defaults for one vehicle class."""

    tire_layout: tuple[str, ...]
    placard_kpa: float


CLASS_PROFILES: dict[str, ClassProfile] = {
    "coach": ClassProfile(_TWO_AXLE, 850.0),
    "bus": ClassProfile(_TWO_AXLE, 800.0),
    "hazmat": ClassProfile(_THREE_AXLE, 900.0),
    "freight": ClassProfile(_THREE_AXLE, 900.0),
}


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A registered vehicle as the ingest path needs it."""

    id: str
    fleet_id: str
    vehicle_class: str
    plate: str | None
    tire_layout: tuple[str, ...]
    placard_kpa: float


def axle_of(pos: str) -> str:
    """Axle number of a tire position: ``"2LO"`` → ``"2"``."""
    digits = ""
    for ch in pos:
        if not ch.isdigit():
            break
        digits += ch
    return digits
