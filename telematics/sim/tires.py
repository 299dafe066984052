"""Tire pressure and temperature (TPMS) of one vehicle (pure, seeded).

Each tire has a cold pressure (placard ± a few percent) and a temperature that moves
toward a target with a first-order lag: ambient when stopped, warmer with speed (about
+35 °C at 90 km/h, a little more on the loaded drive axle and inner twins). Gauge
pressure follows the gas law on absolute pressure (about +0.36 %/°C at truck pressures),
as real tires do and as the server's cold compensation assumes. A vehicle may carry one faulty
tire: a slow leak (a few kPa per 10 min), a fast leak (20–40 kPa/min for a few minutes
at some point, then slow), an overheating wheel end (dragging brake, > 80 °C when
moving) or a failing sensor. The unit raises its own TPMS events when its thresholds
are crossed (with hysteresis), like real TPMS receivers do.

State is integrated lazily: :meth:`TireSet.advance` takes the elapsed simulated time
and the mean speed since the last call, so tires cost nothing between samples.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from telematics.fleet import CLASS_PROFILES

FAULT_KINDS = ("slow_leak", "fast_leak", "overheat", "sensor_fault")
FAULT_WEIGHTS = (0.6, 0.15, 0.15, 0.1)

ATMOSPHERE_KPA = 101.325
HEAT_TAU_S = 600.0  # warming time constant
COOL_TAU_S = 900.0  # cooling time constant
RISE_AT_90_C = 35.0  # steady-state rise over ambient at 90 km/h

# The unit's own TPMS thresholds (fractions of placard, °C, kPa/min).
LOW_1, LOW_2, LOW_REARM = 0.80, 0.70, 0.85
HIGH_1, HIGH_REARM = 1.25, 1.20
TEMP_1, TEMP_2, TEMP_REARM = 85.0, 95.0, 75.0
FAST_LEAK_KPA_MIN = 20.0


@dataclass(slots=True)
class Tire:
    pos: str
    cold_kpa: float
    temp_c: float
    battery_pct: float
    heat_offset_c: float  # position/tire specific extra warming
    fault: str = ""
    leak_kpa_s: float = 0.0  # slow leak rate
    fast_start_s: float = math.inf  # simulated time the fast leak starts
    fast_end_s: float = math.inf
    fast_kpa_s: float = 0.0
    drag_c: float = 0.0  # extra heat from a dragging brake while moving
    kpa: float = 0.0  # current hot gauge pressure
    last_kpa: float = 0.0  # pressure at the previous sample (for leak-rate detection)
    sensor_ok: bool = True
    alarms: int = 0  # bit set of raised alarms: 1 low, 2 low level 2, 4 high, 8 temp, ...


@dataclass(frozen=True, slots=True)
class TireEvent:
    kind: str
    level: int
    attrs: dict[str, Any]


def _heat_offset(pos: str) -> float:
    offset = 0.0
    if pos[0] == "2":  # drive axle carries the load and the brake heat
        offset += 4.0
    if pos.endswith("I"):  # inner twin: less airflow
        offset += 3.0
    return offset


class TireSet:
    """The tires of one vehicle; positions and placard pressure from its class profile."""

    __slots__ = ("_rng", "ambient_c", "fault", "placard_kpa", "sim_t", "tires")

    def __init__(
        self,
        vehicle_class: str,
        rng: random.Random,
        *,
        faulty: bool = False,
        ambient_c: float | None = None,
        fault_kind: str | None = None,
        speed_kmh: float = 0.0,
    ) -> None:
        profile = CLASS_PROFILES.get(vehicle_class, CLASS_PROFILES["coach"])
        self._rng = rng
        self.placard_kpa = profile.placard_kpa
        self.ambient_c = ambient_c if ambient_c is not None else rng.uniform(12.0, 26.0)
        self.sim_t = 0.0
        self.tires: list[Tire] = []
        for pos in profile.tire_layout:
            cold = self.placard_kpa * rng.uniform(0.96, 1.03)
            tire = Tire(
                pos=pos,
                cold_kpa=cold,
                temp_c=self.ambient_c + rng.uniform(-0.5, 0.5),
                battery_pct=rng.uniform(35.0, 100.0),
                heat_offset_c=_heat_offset(pos) + rng.uniform(-2.0, 2.0),
            )
            self.tires.append(tire)
        self.fault = ""
        if faulty or fault_kind:
            self.fault = fault_kind or rng.choices(FAULT_KINDS, FAULT_WEIGHTS)[0]
            self._install_fault(rng.choice(self.tires), self.fault)
        if speed_kmh > 3.0:  # first seen on the road: it has been driving a while
            share = rng.uniform(0.5, 0.95)
            rise = RISE_AT_90_C * (speed_kmh / 90.0) ** 0.8
            for tire in self.tires:
                tire.temp_c = self.ambient_c + share * (rise + tire.heat_offset_c + tire.drag_c)
        for tire in self.tires:
            hot = self._hot_kpa(tire)
            tire.kpa = tire.last_kpa = hot

    def _install_fault(self, tire: Tire, kind: str) -> None:
        rng = self._rng
        tire.fault = kind
        if kind == "slow_leak":
            tire.leak_kpa_s = rng.uniform(2.0, 6.0) / 600.0
            tire.cold_kpa -= rng.uniform(0.0, 40.0)  # it has been leaking for a while
        elif kind == "fast_leak":
            tire.fast_start_s = rng.uniform(120.0, 1200.0)
            tire.fast_end_s = tire.fast_start_s + rng.uniform(120.0, 300.0)
            tire.fast_kpa_s = rng.uniform(20.0, 40.0) / 60.0
            tire.leak_kpa_s = rng.uniform(1.0, 3.0) / 600.0  # a small hole after the fast phase
        elif kind == "overheat":
            tire.drag_c = rng.uniform(40.0, 60.0)
        elif kind == "sensor_fault":
            tire.battery_pct = rng.uniform(1.0, 6.0)

    def advance(self, dt: float, mean_speed_kmh: float) -> None:
        """Integrate ``dt`` simulated seconds at a mean speed of ``mean_speed_kmh``."""
        if dt <= 0.0:
            return
        t0 = self.sim_t
        t1 = t0 + dt
        self.sim_t = t1
        moving = mean_speed_kmh > 3.0
        rise = RISE_AT_90_C * (mean_speed_kmh / 90.0) ** 0.8 if moving else 0.0
        heat = math.exp(-dt / HEAT_TAU_S)
        cool = math.exp(-dt / COOL_TAU_S)
        for tire in self.tires:
            target = self.ambient_c
            if moving:
                target += rise + tire.heat_offset_c + tire.drag_c
            decay = heat if target > tire.temp_c else cool
            tire.temp_c = target + (tire.temp_c - target) * decay
            loss = tire.leak_kpa_s * dt
            if tire.fast_kpa_s and t1 > tire.fast_start_s and t0 < tire.fast_end_s:
                overlap = min(t1, tire.fast_end_s) - max(t0, tire.fast_start_s)
                loss += tire.fast_kpa_s * overlap
            if loss:
                tire.cold_kpa = max(0.0, tire.cold_kpa - loss)
            tire.battery_pct = max(0.0, tire.battery_pct - dt * 1e-6)
            if tire.fault == "sensor_fault" and self._rng.random() < 0.3:
                tire.sensor_ok = False  # intermittent dropouts
            else:
                tire.sensor_ok = True
            tire.kpa = max(0.0, self._hot_kpa(tire))

    def _hot_kpa(self, tire: Tire) -> float:
        """Gauge pressure at the tire's temperature; ``cold_kpa`` is set at ambient."""
        absolute = (tire.cold_kpa + ATMOSPHERE_KPA) * (tire.temp_c + 273.15)
        return absolute / (self.ambient_c + 273.15) - ATMOSPHERE_KPA

    def reinflate(self) -> None:
        """A mechanic at the depot tops up tires that lost more than 10 %."""
        for tire in self.tires:
            if tire.cold_kpa < self.placard_kpa * 0.9:
                tire.cold_kpa = self.placard_kpa * self._rng.uniform(0.98, 1.02)

    def readings(self) -> list[dict[str, Any]]:
        """The ``tires`` array of a telemetry item (rounded like a real TPMS sensor)."""
        rnd = self._rng.random
        return [
            {
                "pos": tire.pos,
                "kpa": max(0, round(tire.kpa + (rnd() - 0.5) * 3.0)),
                "temp_c": round(tire.temp_c + (rnd() - 0.5) * 0.6, 1),
                "sensor_battery_pct": int(tire.battery_pct),
            }
            if tire.sensor_ok
            else {"pos": tire.pos, "sensor_battery_pct": int(tire.battery_pct)}
            for tire in self.tires
        ]

    def check_alarms(self, dt: float) -> list[TireEvent]:
        """The unit's own TPMS alarms newly raised by the latest sample (call after advance)."""
        events: list[TireEvent] = []
        placard = self.placard_kpa
        for tire in self.tires:
            prev = tire.last_kpa
            tire.last_kpa = tire.kpa
            if not tire.sensor_ok:
                if not tire.alarms & 64:
                    tire.alarms |= 64
                    events.append(
                        TireEvent("tire_sensor_fault", 1, {"pos": tire.pos, "reason": "no_signal"})
                    )
                continue
            kpa = tire.kpa
            alarms = tire.alarms
            raised: list[tuple[str, int]] = []  # the usual sample raises nothing
            ratio = kpa / placard
            if ratio < LOW_2 and not alarms & 2:
                alarms |= 3
                raised.append(("tire_pressure_low", 2))
            elif ratio < LOW_1 and not alarms & 1:
                alarms |= 1
                raised.append(("tire_pressure_low", 1))
            elif ratio > LOW_REARM:
                alarms &= ~3
            if ratio > HIGH_1 and not alarms & 4:
                alarms |= 4
                raised.append(("tire_pressure_high", 1))
            elif ratio < HIGH_REARM:
                alarms &= ~4
            temp = tire.temp_c
            if temp > TEMP_2 and not alarms & 16:
                alarms |= 24
                raised.append(("tire_temp_high", 2))
            elif temp > TEMP_1 and not alarms & 8:
                alarms |= 8
                raised.append(("tire_temp_high", 1))
            elif temp < TEMP_REARM:
                alarms &= ~24
            rate = 0.0
            if dt > 0.0:
                rate = (prev - kpa) * 60.0 / dt
                if rate >= FAST_LEAK_KPA_MIN and not alarms & 32:
                    alarms |= 32
                    raised.append(("tire_fast_leak", 2))
                elif rate < FAST_LEAK_KPA_MIN / 4:
                    alarms &= ~32
            tire.alarms = alarms
            if raised:
                attrs: dict[str, Any] = {
                    "pos": tire.pos,
                    "kpa": round(kpa),
                    "temp_c": round(temp, 1),
                    "placard_kpa": placard,
                }
                for kind, level in raised:
                    if kind == "tire_fast_leak":
                        events.append(
                            TireEvent(kind, level, {**attrs, "rate_kpa_min": round(rate, 1)})
                        )
                    else:
                        events.append(TireEvent(kind, level, attrs))
            if tire.battery_pct < 10.0 and not tire.alarms & 128:
                tire.alarms |= 128
                events.append(
                    TireEvent("tire_sensor_fault", 1, {"pos": tire.pos, "reason": "low_battery"})
                )
        return events
