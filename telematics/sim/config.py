"""Configuration of a simulated fleet."""

from __future__ import annotations

from dataclasses import dataclass, field

from telematics.errors import ConfigError
from telematics.fleet import VEHICLE_CLASSES
from telematics.sim.outbox import MAX_BATCH_ITEMS


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """One in-vehicle unit: the vehicle it belongs to and its device token."""

    vehicle_id: str
    token: str
    vehicle_class: str = "coach"


@dataclass
class SimConfig:
    """What to simulate and how hard to push.

    Rates and intervals are in seconds of simulated telemetry time, where every
    telemetry reading advances a unit's world by ``1 / rate_hz`` seconds, except
    ``event_interval_s`` and ``drops_per_hour``, which use the wall clock (so a
    benchmark's event and reconnect load does not grow with its throughput). In the
    default paced mode the two clocks run together.
    """

    url: str
    units: list[UnitSpec]
    rate_hz: float = 1.0  # telemetry readings per second per unit (paced mode)
    duration_s: float | None = None  # None = until the stop event is set
    seed: int = 1
    batch_size: int = 1  # items per frame; 1 = each reading in its own telemetry frame
    window: int = 8  # frames a unit may have unacknowledged
    flood: bool = False  # send as fast as the window allows instead of at rate_hz
    drops_per_hour: float = 2.0  # abrupt disconnects per unit per hour (wall clock)
    tire_interval_s: float = 10.0  # a tires array every this many simulated seconds
    event_interval_s: tuple[float, float] | None = None  # one event per uniform(a, b) s
    connect_rate_per_s: float = 200.0  # start-up ramp
    warmup_s: float = 0.0  # latencies and steady rates count only after this (the ramp)
    drain_s: float = 0.0  # at the end, stop generating and wait this long for the last acks
    # -- extensions (not needed by most callers) --
    tire_fault_fraction: float = 0.02  # share of vehicles with one faulty tire
    max_buffer: int = 100_000  # items a unit holds unacked before dropping the oldest
    reconnect_delay_s: tuple[float, float] = (1.0, 10.0)
    open_timeout_s: float = 20.0
    extra_headers: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for settings the simulator cannot run with."""
        if not self.url.startswith(("ws://", "wss://")):
            raise ConfigError(f"url: must start with ws:// or wss://, got {self.url!r}")
        if not self.rate_hz > 0:
            raise ConfigError("rate_hz: must be > 0")
        if not 1 <= self.batch_size <= MAX_BATCH_ITEMS:
            raise ConfigError(f"batch_size: must be between 1 and {MAX_BATCH_ITEMS}")
        if self.window < 1:
            raise ConfigError("window: must be ≥ 1")
        if self.duration_s is not None and self.duration_s < 0:
            raise ConfigError("duration_s: must be ≥ 0")
        if self.drops_per_hour < 0:
            raise ConfigError("drops_per_hour: must be ≥ 0")
        if not self.tire_interval_s > 0:
            raise ConfigError("tire_interval_s: must be > 0")
        if self.event_interval_s is not None:
            a, b = self.event_interval_s
            if not 0 < a <= b:
                raise ConfigError("event_interval_s: need 0 < a ≤ b")
        if not self.connect_rate_per_s > 0:
            raise ConfigError("connect_rate_per_s: must be > 0")
        if not 0.0 <= self.tire_fault_fraction <= 1.0:
            raise ConfigError("tire_fault_fraction: must be between 0 and 1")
        if self.max_buffer < 1:
            raise ConfigError("max_buffer: must be ≥ 1")
        lo, hi = self.reconnect_delay_s
        if not 0 <= lo <= hi:
            raise ConfigError("reconnect_delay_s: need 0 ≤ a ≤ b")
        seen: set[str] = set()
        for spec in self.units:
            if spec.vehicle_class not in VEHICLE_CLASSES:
                raise ConfigError(
                    f"units: {spec.vehicle_id}: unknown vehicle class {spec.vehicle_class!r}"
                )
            if spec.vehicle_id in seen:
                raise ConfigError(f"units: vehicle {spec.vehicle_id} listed twice")
            seen.add(spec.vehicle_id)
