"""What the geofence stage tells the per-vehicle state about one fix (pure data)."""

from __future__ import annotations

from dataclasses import dataclass

#: Zone kinds: depot, school, tunnel, hazmat-restricted, speed-limited road, flood-prone area.
ZONE_KINDS: tuple[str, ...] = (
    "depot",
    "school",
    "tunnel",
    "hazmat_restricted",
    "speed_limit",
    "flood_prone",
)


@dataclass(frozen=True, slots=True)
class ZoneRef:
    id: str
    kind: str
    name: str
    speed_limit_kmh: float | None = None


@dataclass(frozen=True, slots=True)
class ZoneContext:
    """Zones for one telemetry fix.

    ``inside``: zones containing the fix. ``entered``/``exited``: zones whose boundary the
    segment from the previous fix crossed (a zone can be entered and exited within one
    segment, then it is in both). ``dwelling``: zones the vehicle has now been inside for
    the configured dwell delay (reported once per visit). ``speed_limit_kmh``: the lowest
    limit of the zones inside, if any.
    """

    inside: tuple[ZoneRef, ...] = ()
    entered: tuple[ZoneRef, ...] = ()
    exited: tuple[ZoneRef, ...] = ()
    dwelling: tuple[ZoneRef, ...] = ()
    speed_limit_kmh: float | None = None


NO_ZONES = ZoneContext()
