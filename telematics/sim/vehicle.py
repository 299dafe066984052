"""One simulated vehicle: motion, tires, drivers and events → protocol items (pure).

:meth:`VehicleSim.step` advances simulated time and returns the data items the unit
would record for it (without ``seq``; the outbox numbers them): one ``telemetry``
reading, carrying a ``tires`` array every ``tire_interval_s`` of simulated time, then
any ``event`` items raised meanwhile. ``ts`` comes from the injected clock (wall time
in the simulator, a fake clock in tests).
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from telematics.sim.clock import Clock, format_ts, is_night
from telematics.sim.drivers import MOVING_MIN_KMH, Driver, EventGenerator, describe, make_driver
from telematics.sim.risk import CrashModel
from telematics.sim.tires import TireSet
from telematics.sim.world import Motion, pick_route

Item = dict[str, Any]

DRIVERS_PER_VEHICLE = 2
DRIVER_SWAP_PROBABILITY = 0.5  # at each depot stop
REST_S = 1200.0  # a stop this long ends the stint (the server's rest rule)


class VehicleSim:
    """The generative model of one unit; deterministic for a given seed and clock."""

    __slots__ = (
        "_clock",
        "_crash",
        "_crash_at",
        "_crash_cause",
        "_driver_i",
        "_rng",
        "_speed_integral",
        "_stint_start",
        "_stop_since",
        "_tire_dt",
        "_tire_interval",
        "drivers",
        "events",
        "motion",
        "sim_t",
        "tires",
        "vehicle_class",
        "vehicle_id",
    )

    def __init__(
        self,
        vehicle_id: str,
        vehicle_class: str = "coach",
        seed: int = 1,
        *,
        unit_index: int = 0,
        tire_interval_s: float = 10.0,
        event_interval_s: tuple[float, float] | None = None,
        tire_fault: bool | str = False,
        clock: Clock = time.time,
    ) -> None:
        rng = random.Random(f"{seed}:{vehicle_id}")
        self._rng = rng
        self._clock = clock
        self.vehicle_id = vehicle_id
        self.vehicle_class = vehicle_class
        self.drivers: list[Driver] = [
            make_driver(unit_index * DRIVERS_PER_VEHICLE + k + 1, rng)
            for k in range(DRIVERS_PER_VEHICLE)
        ]
        self._driver_i = rng.randrange(DRIVERS_PER_VEHICLE)
        driver = self.drivers[self._driver_i]
        self.motion = Motion(pick_route(vehicle_class, rng), vehicle_class, rng,
                             speed_factor=driver.speed_factor)  # fmt: skip
        fault_kind = tire_fault if isinstance(tire_fault, str) and tire_fault else None
        self.tires = TireSet(vehicle_class, rng, faulty=bool(tire_fault), fault_kind=fault_kind,
                             speed_kmh=self.motion.speed_kmh)  # fmt: skip
        self.events = EventGenerator(driver, rng, event_interval_s, now=clock())
        self._tire_interval = tire_interval_s
        self._tire_dt = tire_interval_s  # first reading carries tires
        self._speed_integral = 0.0
        self.sim_t = 0.0
        # Collisions follow alarms per the hidden-truth model (sim/risk.py), drawn from
        # their own RNG so every other stream stays as it was.
        self._crash = CrashModel(vehicle_class, random.Random(f"{seed}:{vehicle_id}:crash"))
        self._crash.driver_log_risk = math.log(driver.risk)
        self._crash_at = math.inf  # sim_t of the pending crash (one at a time)
        self._crash_cause = ""
        self._stint_start = 0.0  # sim_t the current stint began (after a rest)
        self._stop_since = -1.0  # sim_t the vehicle stopped, -1 while moving

    @property
    def driver(self) -> Driver:
        return self.drivers[self._driver_i]

    def step(self, dt: float) -> list[Item]:
        """Advance ``dt`` simulated seconds; the items recorded (telemetry first)."""
        m = self.motion
        m.step(dt)
        if m.arrived_depot:
            self.tires.reinflate()
            if self._rng.random() < DRIVER_SWAP_PROBABILITY:
                self._driver_i = (self._driver_i + 1) % len(self.drivers)
                driver = self.drivers[self._driver_i]
                self.events.set_driver(driver)
                self._crash.driver_log_risk = math.log(driver.risk)
        self.sim_t += dt
        now = self._clock()
        ts = format_ts(now)
        speed = m.speed_kmh
        # int(x * 10**k + 0.5) / 10**k rounds (all values are ≥ 0) 2-3x faster than round()
        lat = int(m.lat * 1e6 + 0.5) / 1e6
        lon = int(m.lon * 1e6 + 0.5) / 1e6
        speed_r = int(speed * 10.0 + 0.5) / 10.0
        driver_id = self.drivers[self._driver_i].id
        if speed < MOVING_MIN_KMH:
            if self._stop_since < 0.0:
                self._stop_since = self.sim_t
        elif self._stop_since >= 0.0:
            if self.sim_t - self._stop_since >= REST_S:
                self._stint_start = self.sim_t
            self._stop_since = -1.0
        item: Item = {
            "type": "telemetry",
            "seq": 0,
            "ts": ts,
            "lat": lat,
            "lon": lon,
            "speed_kmh": speed_r,
            "heading_deg": int(m.heading_deg * 10.0 + 0.5) / 10.0,
            "driver_id": driver_id,
            "ignition": m.ignition,
            "odometer_km": int(m.odometer_km * 10.0 + 0.5) / 10.0,
        }
        out = [item]
        self._tire_dt += dt
        self._speed_integral += speed * dt
        if self._tire_dt >= self._tire_interval:
            span = self._tire_dt
            tires = self.tires
            tires.advance(span, self._speed_integral / span)
            self._tire_dt = 0.0
            self._speed_integral = 0.0
            item["tires"] = tires.readings()
            for alarm in tires.check_alarms(span):
                out.append({
                    "type": "event", "seq": 0, "ts": ts, "kind": alarm.kind,
                    "level": alarm.level, "lat": lat, "lon": lon, "speed_kmh": speed_r,
                    "driver_id": driver_id, "attrs": alarm.attrs,
                })  # fmt: skip
                self._maybe_crash(alarm.kind, alarm.level, speed, now)
        if self.sim_t >= self._crash_at:
            out.append(self._crash_item(ts, lat, lon, speed_r, driver_id))
        kind = self.events.step(dt, now, speed, m.ignition, is_night(now))
        if kind is not None:
            draw = describe(kind, self._rng, speed, m.limit_kmh)
            event: Item = {"type": "event", "seq": 0, "ts": ts, "kind": kind}
            if draw.level is not None:
                event["level"] = draw.level
            event_speed = speed if draw.speed_kmh is None else draw.speed_kmh
            event.update(lat=lat, lon=lon, speed_kmh=round(event_speed, 1), driver_id=driver_id,
                         attrs=draw.attrs)  # fmt: skip
            out.append(event)
            if draw.speed_kmh is not None:
                m.speed_kmh = draw.speed_kmh  # the spike or the braking really happened
            self._maybe_crash(kind, draw.level, event_speed, now)
        return out

    def _maybe_crash(self, kind: str, level: int | None, speed_kmh: float, now: float) -> None:
        """Draw whether this alarm leads to a crash (only alarms, a few per hour, pay)."""
        if self._crash_at != math.inf:
            return  # one pending crash at a time
        tires = sum(1 for t in self.tires.tires if t.alarms)
        stint_h = (self.sim_t - self._stint_start) / 3600.0
        delay = self._crash.after_alarm(
            kind, level, self.sim_t, speed_kmh, is_night(now), stint_h, tires
        )
        if delay is not None:
            self._crash_at = self.sim_t + delay
            self._crash_cause = kind

    def _crash_item(self, ts: str, lat: float, lon: float, speed: float, driver_id: str) -> Item:
        kind = self._crash.outcome_kind(self._crash_cause)
        self._crash_at = math.inf
        draw = describe(kind, self._crash.rng, speed, 0.0)
        return {"type": "event", "seq": 0, "ts": ts, "kind": kind, "level": draw.level,
                "lat": lat, "lon": lon, "speed_kmh": speed, "driver_id": driver_id,
                "attrs": draw.attrs}  # fmt: skip
