"""Per-vehicle tire state: derives tire alarms from telemetry, one reading at a time.

A condition raises a candidate on onset or when its severity rises, never on every
reading; it clears once the value is back inside its threshold by
``rules.clear_margin`` (a fraction of the threshold), so a later onset alerts again. A
clear raises nothing; ``ended`` lists the keys the last update cleared, so the alarm
lifecycle can close those alarms (``condition_ended``).
Within one episode the severity only goes up: a value hovering at a band edge must
not re-alert the driver every few seconds.

Axle imbalance (optional, off unless ``imbalance_ratio`` is given): the latest
cold-compensated pressures of the tires of one axle, read within ``imbalance_max_skew_s``
of each other, spread by more than the ratio of the highest. The twins of one wheel are
on the same axle, so a twin imbalance is caught by the same check and named as such.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import datetime

from telematics.classify.alarms import SEVERITY_RANK, AlarmCandidate
from telematics.classify.rules import Rules
from telematics.errors import UsageError
from telematics.fleet import Vehicle, axle_of
from telematics.protocol.messages import Telemetry, TireReading

LOW, HIGH, TEMP = "tire_pressure_low", "tire_pressure_high", "tire_temp_high"
SLOW_LEAK, FAST_LEAK = "tire_slow_leak", "tire_fast_leak"
IMBALANCE = "tire_imbalance"
#: Every kind this monitor raises (and reports in ``ended`` when it is over).
CONDITION_KINDS = frozenset((LOW, HIGH, TEMP, SLOW_LEAK, FAST_LEAK, IMBALANCE))

ATM_KPA = 101.325
REF_K = 293.15  # 20 °C: pressures are compared as if the tire were cold
FAST_LEAK_MIN_SPAN_S = 10.0  # two readings closer than this make sensor noise look like a leak
# A fitted drop smaller than this is within TPMS resolution (a few kPa per LSB): 4 kPa of
# jitter across 10 s would otherwise read as −24 kPa/min.
FAST_LEAK_MIN_DROP_KPA = 10.0
SLOW_LEAK_MIN_POINTS = 5
_MAX_POINTS = 4096  # hard bound per window even for a unit reporting far faster than 1 Hz
_RESUM_EVERY = 1024  # recompute running sums now and then so float drift cannot build up
_COMPACT_AFTER = 256  # dropped points at the front before the arrays are shifted down


def _minus(slope: float | None, digits: int) -> str:
    """A falling slope as dispatchers read it: ``−34``."""
    return f"−{abs(slope or 0.0):.{digits}f}"


def cold_kpa(kpa: float, temp_c: float | None) -> float:
    """Gauge pressure the tire would have at 20 °C (ideal gas, constant volume)."""
    if temp_c is None:
        return kpa
    return (kpa + ATM_KPA) * REF_K / (temp_c + 273.15) - ATM_KPA


def _imbalance_reason(axle: str, fresh: list[tuple[float, str]], ratio: float) -> str:
    """Names the pair: the lowest tire against its own twin if they alone differ that
    much (one wheel's twins share the load unevenly), else against the axle's highest."""
    (lo, lo_pos), (hi, hi_pos) = min(fresh), max(fresh)
    where = f"axle {axle}"
    if len(lo_pos) == 3:
        twin_pos = lo_pos[:-1] + ("I" if lo_pos[-1] == "O" else "O")
        twin = next((kpa for kpa, pos in fresh if pos == twin_pos), None)
        if twin is not None and twin > 0 and (twin - lo) / twin > ratio:
            where, hi_pos, hi = f"twins {lo_pos[:-1]}", twin_pos, twin
    return f"{where} imbalance: {lo_pos} {lo:.0f} kPa vs {hi_pos} {hi:.0f} kPa cold, " + (
        f"{(hi - lo) / hi:.0%} apart"
    )


class _Window:
    """Points (t seconds, kPa) of the last ``span_s`` with running least-squares sums.

    Two flat arrays and a start index rather than ``FloatRows``: every tire reading adds
    to two windows, and the generic row API was most of a reading's cost.
    """

    __slots__ = (
        "_adds",
        "_n",
        "_origin",
        "_p",
        "_sp",
        "_st",
        "_start",
        "_stp",
        "_stt",
        "_t",
        "span_s",
    )

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._t = array("d")
        self._p = array("d")
        self._start = 0  # index of the oldest live point
        self._origin = 0.0  # t is kept relative to this so t² stays small
        self._adds = 0
        self._reset_sums()

    def __len__(self) -> int:
        return len(self._t) - self._start

    def _reset_sums(self) -> None:
        self._n = 0
        self._st = self._sp = self._stt = self._stp = 0.0
        start = self._start
        if len(self._t) > start:
            self._origin = self._t[start]
        for i in range(start, len(self._t)):
            self._acc(self._t[i], self._p[i], 1)

    def _acc(self, t: float, p: float, sign: int) -> None:
        x = t - self._origin
        self._n += sign
        self._st += sign * x
        self._sp += sign * p
        self._stt += sign * x * x
        self._stp += sign * x * p

    def add(self, t: float, p: float) -> None:
        ts, ps = self._t, self._p
        start = self._start
        if len(ts) == start:
            self._origin = t
        elif len(ts) - start >= _MAX_POINTS:
            self._acc(ts[start], ps[start], -1)
            start += 1
        ts.append(t)
        ps.append(p)
        # The running sums, inlined: this is the hot loop of every tire reading.
        origin = self._origin
        x = t - origin
        n, st, sp, stt, stp = (
            self._n + 1,
            self._st + x,
            self._sp + p,
            self._stt + x * x,
            self._stp + x * p,
        )
        cutoff = t - self.span_s
        while ts[start] < cutoff:
            x, old = ts[start] - origin, ps[start]
            n, st, sp, stt, stp = n - 1, st - x, sp - old, stt - x * x, stp - x * old
            start += 1
        self._n, self._st, self._sp, self._stt, self._stp = n, st, sp, stt, stp
        if start >= _COMPACT_AFTER and start * 2 >= len(ts):
            del ts[:start], ps[:start]
            start = 0
        self._start = start
        self._adds += 1
        if self._adds % _RESUM_EVERY == 0:
            self._reset_sums()

    def span(self) -> float:
        ts = self._t
        return ts[-1] - ts[self._start] if len(ts) > self._start else 0.0

    def slope_per_min(self) -> float | None:
        """Least-squares slope in kPa/min, None with fewer than two distinct times."""
        n = self._n
        if n < 2:
            return None
        var = self._stt - self._st * self._st / n
        if var <= 1e-9:
            return None
        return (self._stp - self._st * self._sp / n) / var * 60.0


@dataclass
class _Tire:
    slow: _Window  # cold-compensated kPa
    fast: _Window  # gauge kPa
    axle: str
    newest: datetime | None = None
    last_temp: float | None = None
    last_cold: float | None = None  # latest cold-compensated kPa, for axle imbalance
    last_t: float = 0.0
    active: dict[str, str] = field(default_factory=dict)  # kind → peak severity this episode


# What one check says about a condition right now: the severity if present, else
# whether the value is clearly back to normal (False = hysteresis band or no data: hold).
_Verdict = tuple[str | None, bool]
_HOLD: _Verdict = (None, False)
_CLEAR: _Verdict = (None, True)


class TireMonitor:
    """Tire conditions of one vehicle; feed it that vehicle's telemetry in arrival order."""

    def __init__(
        self,
        vehicle: Vehicle,
        rules: Rules,
        imbalance_ratio: float | None = None,
        imbalance_max_skew_s: float = 120.0,
    ) -> None:
        self.vehicle = vehicle
        self.rules = rules
        self.imbalance_ratio = imbalance_ratio
        self.imbalance_max_skew_s = imbalance_max_skew_s
        self._tires: dict[str, _Tire] = {}
        self._axles: dict[str, list[tuple[str, _Tire]]] = {}  # axle → its (pos, tire)
        self._imbalanced: dict[str, str] = {}  # axle → position of its lowest tire at onset
        #: Alarm keys of the conditions the last ``update`` found over (back to normal).
        self.ended: list[str] = []

    def active(self) -> dict[str, frozenset[str]]:
        """Tire position → kinds of its active conditions (positions with none are left out)."""
        return {pos: frozenset(t.active) for pos, t in self._tires.items() if t.active}

    def active_count(self) -> int:
        """Active conditions over all tires and axles (cheap: no allocation)."""
        return sum(len(t.active) for t in self._tires.values()) + len(self._imbalanced)

    def imbalanced(self) -> dict[str, str]:
        """Axle → position of the lowest tire when its imbalance began, for active ones."""
        return dict(self._imbalanced)

    def restore(self, kind: str, pos: str, severity: str) -> None:
        """Re-seed an active condition (an open alarm loaded after a restart), so that the
        episode goes on: no second onset alert, and ``ended`` reports it once it is over."""
        if kind == IMBALANCE:
            self._imbalanced[axle_of(pos)] = pos
            return
        if severity not in SEVERITY_RANK:
            raise UsageError(f"unknown severity {severity!r}")
        tire = self._tire(pos)
        prior = tire.active.get(kind)
        if prior is None or SEVERITY_RANK[severity] > SEVERITY_RANK[prior]:
            tire.active[kind] = severity

    def _tire(self, pos: str) -> _Tire:
        tire = self._tires.get(pos)
        if tire is None:
            tire = _Tire(
                _Window(self.rules.leak_window_s),
                _Window(self.rules.fast_leak_window_s),
                axle_of(pos),
            )
            self._tires[pos] = tire
            self._axles.setdefault(tire.axle, []).append((pos, tire))
        return tire

    def update(self, telemetry: Telemetry) -> list[AlarmCandidate]:
        out: list[AlarmCandidate] = []
        axles: set[str] = set()
        if self.ended:
            self.ended = []
        for reading in telemetry.tires:
            tire = self._tires.get(reading.pos)
            if tire is None:
                tire = self._tire(reading.pos)
            # An older (or same-time, i.e. resent) reading would corrupt the slope windows.
            if tire.newest is not None and telemetry.ts <= tire.newest:
                continue
            tire.newest = telemetry.ts
            if reading.temp_c is not None:
                tire.last_temp = reading.temp_c
            out.extend(self._check(tire, reading, telemetry))
            if reading.kpa is not None:
                axles.add(tire.axle)
        if self.imbalance_ratio is not None and axles:
            t = telemetry.ts.timestamp()
            for axle in sorted(axles):
                out.extend(self._imbalance(axle, self.imbalance_ratio, t, telemetry))
        return out

    def _imbalance(self, axle: str, ratio: float, t: float, tm: Telemetry) -> list[AlarmCandidate]:
        oldest = t - self.imbalance_max_skew_s
        fresh: list[tuple[float, str]] = [
            (tire.last_cold, pos)
            for pos, tire in self._axles[axle]
            if tire.last_cold is not None and tire.last_t >= oldest
        ]
        if len(fresh) < 2:
            return []  # nothing to compare: hold whatever state the axle is in
        (lo, lo_pos), hi = min(fresh), max(fresh)[0]
        spread = (hi - lo) / hi if hi > 0 else 0.0
        if spread <= ratio:
            if spread < ratio * (1 - self.rules.clear_margin):
                if self._imbalanced.pop(axle, None) is not None:
                    self.ended.append(f"{IMBALANCE}:axle{axle}")
            return []
        if axle in self._imbalanced:
            return []
        self._imbalanced[axle] = lo_pos
        reason = _imbalance_reason(axle, fresh, ratio)
        return [
            self._candidate(IMBALANCE, "general", reason, lo_pos, tm, key=f"{IMBALANCE}:axle{axle}")
        ]

    def _check(self, tire: _Tire, r: TireReading, tm: Telemetry) -> list[AlarmCandidate]:
        out: list[AlarmCandidate] = []
        temp_c, kpa = r.temp_c, r.kpa
        rl = self.rules
        # With no condition active on the tire only an onset matters, and nearly every
        # reading is plainly normal: skip those checks (a third of the time per reading).
        watching = bool(tire.active)
        if temp_c is not None and (
            watching or temp_c >= rl.high_temp_c or temp_c >= rl.severe_temp_c
        ):
            self._apply(out, tire, TEMP, self._temp(temp_c), r, tm)
        if kpa is None:
            return out
        placard = self.vehicle.placard_kpa
        if placard > 0 and (  # a vehicle record without a placard cannot judge low/high
            watching
            or kpa < placard * rl.low_pressure_ratio
            or kpa < placard * rl.low_pressure_moderate_ratio
            or kpa > placard * rl.high_pressure_ratio
        ):
            self._apply(out, tire, LOW, self._low(kpa, placard), r, tm)
            self._apply(out, tire, HIGH, self._high(kpa, placard), r, tm)

        # A cooling tire loses gauge pressure; compensating keeps that from looking like a
        # slow leak. The fast window stays on gauge kPa: within a minute the gas effect is
        # small, while 1 °C of sensor noise moves compensated pressure by ~3 kPa.
        t = tm.ts.timestamp()
        tire.last_cold, tire.last_t = cold_kpa(kpa, tire.last_temp), t
        tire.slow.add(t, tire.last_cold)
        tire.fast.add(t, kpa)
        self._apply(out, tire, FAST_LEAK, self._fast_leak(tire.fast, tm.speed_kmh), r, tm)
        # While a fast leak is active the same leak is already alarmed, more severely.
        if FAST_LEAK not in tire.active:
            self._apply(out, tire, SLOW_LEAK, self._slow_leak(tire.slow), r, tm)
        return out

    def _apply(
        self,
        out: list[AlarmCandidate],
        tire: _Tire,
        kind: str,
        verdict: _Verdict,
        r: TireReading,
        tm: Telemetry,
    ) -> None:
        """Raise the condition on onset or a rise in severity; clear it once normal."""
        severity, cleared = verdict
        current = tire.active.get(kind)
        if severity is None:
            if cleared and current is not None:
                del tire.active[kind]
                self.ended.append(f"{kind}:{r.pos}")
            return
        if current is None or SEVERITY_RANK[severity] > SEVERITY_RANK[current]:
            tire.active[kind] = severity
            reason = self._reason(kind, tire, r, tm)
            out.append(self._candidate(kind, severity, reason, r.pos, tm))

    def _reason(self, kind: str, tire: _Tire, r: TireReading, tm: Telemetry) -> str:
        """What a dispatcher reads; built only when a candidate goes out."""
        pos = r.pos
        if kind == TEMP:
            return f"tire {pos} {r.temp_c:.0f} °C"
        if kind == FAST_LEAK:
            return (
                f"fast leak on {pos}: {_minus(tire.fast.slope_per_min(), 0)} kPa/min "
                f"at {tm.speed_kmh:.0f} km/h"
            )
        if kind == SLOW_LEAK:
            return (
                f"slow leak on {pos}: {_minus(tire.slow.slope_per_min(), 1)} kPa/min "
                f"over {tire.slow.span() / 60:.0f} min"
            )
        kpa, placard = r.kpa or 0.0, self.vehicle.placard_kpa  # LOW, HIGH
        return f"tire {pos} {kpa:.0f} kPa, {kpa / placard:.0%} of placard {placard:.0f} kPa"

    def _low(self, kpa: float, placard: float) -> _Verdict:
        rl = self.rules
        if kpa < placard * rl.low_pressure_moderate_ratio:
            return ("moderate", False)
        if kpa < placard * rl.low_pressure_ratio:
            return ("general", False)
        cleared = kpa >= placard * rl.low_pressure_ratio * (1 + rl.clear_margin)
        return _CLEAR if cleared else _HOLD

    def _high(self, kpa: float, placard: float) -> _Verdict:
        rl = self.rules
        if kpa > placard * rl.high_pressure_ratio:
            return ("general", False)
        cleared = kpa <= placard * rl.high_pressure_ratio * (1 - rl.clear_margin)
        return _CLEAR if cleared else _HOLD

    def _temp(self, temp_c: float) -> _Verdict:
        rl = self.rules
        if temp_c >= rl.severe_temp_c:
            return ("severe", False)
        if temp_c >= rl.high_temp_c:
            return ("moderate", False)
        return _CLEAR if temp_c < rl.high_temp_c * (1 - rl.clear_margin) else _HOLD

    def _slow_leak(self, w: _Window) -> _Verdict:
        rl = self.rules
        slope = w.slope_per_min()
        # A short span is noise either way: it neither raises nor clears a slow leak.
        if slope is None or len(w) < SLOW_LEAK_MIN_POINTS:
            return _HOLD
        if w.span() < rl.slow_leak_min_span_s:
            return _HOLD
        if slope <= -rl.slow_leak_kpa_per_min:
            return ("general", False)
        return _CLEAR if slope > -rl.slow_leak_kpa_per_min * (1 - rl.clear_margin) else _HOLD

    def _fast_leak(self, w: _Window, speed_kmh: float) -> _Verdict:
        rl = self.rules
        slope = w.slope_per_min()
        if slope is None or w.span() < FAST_LEAK_MIN_SPAN_S:
            return _HOLD
        rate = -slope
        if rate >= rl.fast_leak_kpa_per_min and rate * w.span() / 60 >= FAST_LEAK_MIN_DROP_KPA:
            at_speed = speed_kmh >= rl.fast_leak_severe_speed_kmh
            return ("severe" if at_speed else "moderate", False)
        return _CLEAR if rate < rl.fast_leak_kpa_per_min * (1 - rl.clear_margin) else _HOLD

    def _candidate(
        self,
        kind: str,
        severity: str,
        reason: str,
        pos: str,
        tm: Telemetry,
        key: str | None = None,
    ) -> AlarmCandidate:
        return AlarmCandidate(
            vehicle_id=self.vehicle.id,
            kind=kind,
            key=key or f"{kind}:{pos}",
            severity=severity,
            reason=reason,
            seq=tm.seq,
            ts=tm.ts,
            derived=True,
            level=None,
            tire_pos=pos,
            lat=tm.lat,
            lon=tm.lon,
            speed_kmh=tm.speed_kmh,
        )
