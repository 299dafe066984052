"""Fast offline generator: labelled alarms straight from the simulator's generative model.

The live simulator (``telematics/sim``) is the reference: drivers with a hidden
riskiness and per-kind propensities raise alarms at the situational rates of
``sim/drivers.py``, and a collision follows an alarm with the probability of
``sim/risk.py``. Driving it through the server would take hours per million alarms, so
this module draws the same quantities directly, vectorised with numpy: the fleet (vehicles,
classes, hidden vehicle condition, tire faults), the drivers (hidden riskiness and
propensities, drawn like ``make_driver``), then each alarm's driver, situation, kind, level,
context, history, and finally its outcome. ``ml/README.md`` lists every step.

Seeded: the same ``(n, seed, mix)`` gives the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from ml.features import _KIND, BASES, Columns
from telematics.classify.risk_policy import LOADS, load_policy
from telematics.fleet import VEHICLE_CLASSES
from telematics.geo.context import ZONE_KINDS
from telematics.sim import risk
from telematics.sim.drivers import BASE_RATES_PER_H, _modifier

F64 = NDArray[np.float64]

#: Device kinds a driver raises (outcomes excluded) and their base rates per hour.
DEVICE_KINDS: tuple[str, ...] = tuple(k for k in BASE_RATES_PER_H if k not in risk.OUTCOME_KINDS)
_BASE_RATE = np.array([BASE_RATES_PER_H[k] for k in DEVICE_KINDS])
_ZBIT = {z: 1 << j for j, z in enumerate(ZONE_KINDS)}
#: Road mix per class: share of alarms in town (< 30 km/h), 30–80 and ≥ 80 km/h.
ROAD_MIX: dict[str, tuple[float, float, float]] = {
    "coach": (0.25, 0.35, 0.40),
    "bus": (0.60, 0.35, 0.05),
    "hazmat": (0.35, 0.45, 0.20),
    "freight": (0.30, 0.35, 0.35),
}
TOP_SPEED: dict[str, float] = {"coach": 105.0, "bus": 95.0, "hazmat": 88.0, "freight": 98.0}
STANDING_SHARE = 0.03  # alarms raised standing still (panic, camera blocked, smoking …)
TIRE_KINDS = ("tire_pressure_low", "tire_slow_leak", "tire_temp_high", "tire_fast_leak")
TIRE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
TIRE_BASE = ("general", "general", "moderate", "moderate")
START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FleetMix:
    """What kind of fleet: vehicle classes, night driving, tire faults."""

    class_shares: tuple[float, ...] = (0.35, 0.30, 0.15, 0.20)  # VEHICLE_CLASSES order
    night_share: float = 0.2
    tire_fault_share: float = 0.03
    days: int = 90

    def shifted(self) -> FleetMix:
        """Twice the hazmat share and twice the night driving (the transfer test)."""
        shares = list(self.class_shares)
        h = VEHICLE_CLASSES.index("hazmat")
        shares[h] *= 2.0
        total = sum(shares)
        return replace(
            self,
            class_shares=tuple(s / total for s in shares),
            night_share=min(1.0, 2.0 * self.night_share),
        )


@dataclass(slots=True)
class Alarms:
    """Generated alarms: the snapshot the server would grade, the outcome, and who."""

    columns: Columns
    label: NDArray[np.bool_]  # a collision followed within the horizon
    true_p: F64  # the hidden probability (for the report's oracle line, never a feature)
    vehicle: NDArray[np.int64]
    driver: NDArray[np.int64]
    fleet: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.label)

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_] | slice) -> Alarms:
        return Alarms(self.columns.take(index), self.label[index], self.true_p[index],
                      self.vehicle[index], self.driver[index], self.fleet[index])  # fmt: skip


def _situation_weights() -> F64:
    """Base rate × situational modifier per (band 1–4, night) and kind: (8, K)."""
    out = np.empty((8, len(DEVICE_KINDS)))
    for band in range(1, 5):
        for night in (0, 1):
            out[(band - 1) * 2 + night] = [
                BASE_RATES_PER_H[k] * _modifier(k, band, bool(night)) for k in DEVICE_KINDS
            ]
    return out


def _pick(rng: np.random.Generator, weights: F64) -> NDArray[np.intp]:
    """One column index per row of ``weights`` (rows need not sum to one)."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    out: NDArray[np.intp] = np.minimum((cum < u[:, None]).sum(axis=1), weights.shape[1] - 1)
    return out


def generate(n: int, seed: int = 1, mix: FleetMix | None = None) -> Alarms:
    """``n`` labelled alarms of a fleet drawn with ``seed``."""
    mix = mix or FleetMix()
    rng = np.random.default_rng(seed)
    policy = load_policy()
    classes = np.array(VEHICLE_CLASSES)
    k_dev = len(DEVICE_KINDS)

    # -- the fleet: vehicles and their hidden condition, drivers and their hidden risk
    n_vehicles = max(20, n // 500)
    vclass = rng.choice(len(classes), n_vehicles, p=np.array(mix.class_shares))
    v_effect = rng.normal(0.0, risk.VEHICLE_SD, n_vehicles)
    v_tire_fault = rng.random(n_vehicles) < mix.tire_fault_share
    n_fleets = max(1, n_vehicles // 100)
    n_drivers = 2 * n_vehicles  # two drivers share each vehicle, as in the simulator
    log_risk = rng.normal(-0.18, 0.6, n_drivers)  # make_driver's lognormvariate(-0.18, 0.6)
    propensity = rng.lognormal(-0.08, 0.4, (n_drivers, k_dev))
    night_pref = np.clip(rng.normal(mix.night_share, 0.1, n_drivers), 0.0, 1.0)
    stint_pref = rng.lognormal(0.0, 0.3, n_drivers)  # some drivers skip breaks
    rate = np.exp(log_risk)[:, None] * propensity * _BASE_RATE  # alarms per hour, by kind
    total_rate = rate.sum(axis=1)

    # -- each alarm: whose, when, where (riskier drivers raise more alarms)
    driver = rng.choice(n_drivers, n, p=total_rate / total_rate.sum())
    vehicle = driver // 2
    cls = vclass[vehicle]
    night = rng.random(n) < night_pref[driver]
    road = np.empty(n, np.int64)
    u = rng.random(n)
    for c, name in enumerate(VEHICLE_CLASSES):
        town, mid, _ = ROAD_MIX[name]
        sel = cls == c
        road[sel] = np.where(u[sel] < town, 2, np.where(u[sel] < town + mid, 3, 4))
    band = np.where(rng.random(n) < STANDING_SHARE, 1, road)
    top = np.array([TOP_SPEED[c] for c in VEHICLE_CLASSES])[cls]
    speed = np.select(
        [band == 1, band == 2, band == 3],
        [rng.uniform(0.0, 4.0, n), rng.uniform(5.0, 30.0, n), rng.uniform(30.0, 80.0, n)],
        rng.uniform(80.0, np.maximum(top, 82.0)),
    )

    # -- the kind, by the driver's propensities in this situation (chunked: n × K floats)
    sit = _situation_weights()
    kind_dev = np.empty(n, np.int64)
    for lo in range(0, n, 200_000):
        hi = min(n, lo + 200_000)
        w = propensity[driver[lo:hi]] * sit[(band[lo:hi] - 1) * 2 + night[lo:hi]]
        kind_dev[lo:hi] = _pick(rng, w)
    kind_names = np.array(DEVICE_KINDS)[kind_dev]
    level2 = (
        rng.random(n) < np.array([risk.LEVEL2_SHARE.get(k, 0.0) for k in DEVICE_KINDS])[kind_dev]
    )
    level = np.where(level2, 2, 1)
    limit = np.array([policy.overspeed.road_limit_kmh[c] for c in VEHICLE_CLASSES])[cls]
    over = kind_names == "overspeed"
    speed = np.where(over, np.maximum(speed, limit * rng.uniform(1.05, 1.3, n)), speed)
    brake = kind_names == "harsh_brake"
    drop = rng.uniform(0.3, 0.7, n) * 9.81 * rng.uniform(1.0, 2.5, n) * 3.6
    speed = np.where(brake, np.maximum(0.0, speed - drop), speed)

    # -- context: load, zones, driving time, tires
    heavy = risk.HEAVY[cls]
    load = np.where(
        heavy,
        rng.choice(len(LOADS), n, p=[0.25, 0.25, 0.4, 0.1]),
        rng.choice(len(LOADS), n, p=[0.05, 0.1, 0.05, 0.8]),
    )
    zones = np.zeros(n, np.int64)
    r = rng.random((5, n))
    zones |= np.where((band == 2) & (r[0] < 0.05) | (band == 3) & (r[0] < 0.01), _ZBIT["school"], 0)
    zones |= np.where((band >= 3) & (r[1] < 0.03), _ZBIT["tunnel"], 0)
    zones |= np.where(r[2] < 0.02, _ZBIT["flood_prone"], 0)
    zones |= np.where((band <= 2) & (r[3] < 0.10), _ZBIT["depot"], 0)
    in_limit_zone = r[4] < 0.05
    zones |= np.where(in_limit_zone, _ZBIT["speed_limit"], 0)
    limit = np.where(in_limit_zone, np.where(band >= 3, 60.0, 40.0), limit)
    cont_h = rng.gamma(1.6, 0.9, n) * stint_pref[driver] * np.where(night, 1.4, 1.0)
    cont_h = np.clip(cont_h, 0.0, 9.0)
    today_h = cont_h + np.where(rng.random(n) < 0.5, rng.gamma(1.2, 1.5, n), 0.0)
    tire_cond = np.where(
        v_tire_fault[vehicle],
        (rng.random(n) < 0.6).astype(np.int64) + (rng.random(n) < 0.15),
        (rng.random(n) < 0.005).astype(np.int64),
    )

    # -- kinds the server derives replace some device alarms
    kind = np.array([_KIND[k] for k in DEVICE_KINDS])[kind_dev]
    derived = np.zeros(n, np.bool_)
    base = np.zeros(n, np.int64)
    r = rng.random((3, n))
    tire = v_tire_fault[vehicle] & (r[0] < 0.15)
    t_pick = rng.choice(len(TIRE_KINDS), n, p=TIRE_WEIGHTS)
    kind = np.where(tire, np.array([_KIND[k] for k in TIRE_KINDS])[t_pick], kind)
    base = np.where(tire, np.array([BASES.index(b) for b in TIRE_BASE])[t_pick], base)
    tire_cond = np.where(tire, np.maximum(tire_cond, 1), tire_cond)
    drive = ~tire & (cont_h >= 4.0) & (band >= 2) & (r[1] < 0.1)
    kind = np.where(drive, _KIND["driving_time"], kind)
    hz = ~tire & ~drive & (cls == VEHICLE_CLASSES.index("hazmat")) & (r[2] < 0.01)
    kind = np.where(hz, _KIND["hazmat_restricted_zone"], kind)
    zones |= np.where(hz, _ZBIT["hazmat_restricted"], 0)
    derived = tire | drive | hz
    level = np.where(derived, 0, level)
    level2 = level2 & ~derived

    # -- history: the same kind and all kinds in the last 30 min, the driver's record
    half_h = 0.5 * np.where(night, 1.3, 1.0)
    own = rate[driver, kind_dev] * half_h
    recurrence = 1 + rng.poisson(np.where(derived, 0.05, own))
    recent = recurrence + rng.poisson(np.maximum(total_rate[driver] * half_h - own, 0.0))
    d_hours = rng.uniform(0.0, 10.0, n)
    d_alarms = rng.poisson(total_rate[driver] * d_hours)

    # -- when: a day of the period, an hour that is night or not in local time
    day = rng.integers(0, mix.days, n)
    hour = np.where(night, (22.0 + rng.uniform(0.0, 8.0, n)) % 24.0, rng.uniform(6.0, 22.0, n))
    ts = START.timestamp() + day * 86400.0 + (hour - 8.0) * 3600.0  # the fleet's UTC+8

    speed = np.round(speed, 1)  # as units report it

    # -- the outcome, from the hidden truth
    truth_kind = np.array([risk.KIND_INDEX[k] for k in _truth_kinds()])[kind]
    z = risk.collision_logit(
        kind=truth_kind,
        level2=level2,
        speed_kmh=speed,
        vehicle_class=cls,
        load_full=load == LOADS.index("full"),
        load_half=load == LOADS.index("half"),
        night=night,
        school=(zones & _ZBIT["school"]) > 0,
        tunnel=(zones & _ZBIT["tunnel"]) > 0,
        flood_prone=(zones & _ZBIT["flood_prone"]) > 0,
        depot=(zones & _ZBIT["depot"]) > 0,
        hazmat_zone=(zones & _ZBIT["hazmat_restricted"]) > 0,
        recurrence=recurrence.astype(np.float64),
        recent_alarms=recent.astype(np.float64),
        continuous_h=cont_h,
        tire_conditions=tire_cond.astype(np.float64),
        driver_log_risk=log_risk[driver],
        vehicle_effect=v_effect[vehicle],
        noise=rng.normal(0.0, risk.NOISE_SD, n),
    )
    p = risk.sigmoid(z)
    label = rng.random(n) < p

    columns = Columns(
        kind=kind.astype(np.int64),
        level=level.astype(np.int64),
        ts=ts,
        speed_kmh=speed,
        speed_limit_kmh=limit.astype(np.float64),
        vehicle_class=cls.astype(np.int64),
        load=load.astype(np.int64),
        night=night,
        zones=zones,
        recurrence=recurrence.astype(np.int64),
        continuous_driving_s=cont_h * 3600.0,
        driving_today_s=today_h * 3600.0,
        derived=derived,
        base=base,
        recent_alarms=recent.astype(np.int64),
        tire_conditions=tire_cond.astype(np.int64),
        driver_alarms=d_alarms.astype(np.int64),
        driver_hours=d_hours,
    )
    return Alarms(columns, label, p, vehicle.astype(np.int64), driver.astype(np.int64),
                  (vehicle % n_fleets).astype(np.int64))  # fmt: skip


def _truth_kinds() -> tuple[str, ...]:
    """The feature vocabulary mapped onto the truth's (outcomes fall on a neutral kind)."""
    from ml.features import KINDS

    return tuple(k if k in risk.KIND_INDEX else "camera_blocked" for k in KINDS)
