"""Driving time and rest breaks, the commercial-driver limits, and local night.

Each fix closes the interval since the previous one, which is counted in the previous
fix's state: driving (speed above ``moving_kmh`` with the ignition not off) or stopped.
A unit silent for longer than ``max_fix_gap_s`` had its ignition off (units report every
few seconds while on), so the gap counts as stopped. A stop of ``rest_s`` (20 min) is a
rest break: it ends the stint. Shorter stops neither count as driving nor end the stint.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from telematics.classify.risk_policy import DrivingPolicy

CONTINUOUS, NIGHT = "continuous", "night"


class LocalTime:
    """Night and local date of a timestamp in the policy's time zone."""

    def __init__(self, policy: DrivingPolicy) -> None:
        self.policy = policy
        self._tz = policy.tz
        self._minute = -1
        self._night = False
        self._date = date.min

    def _at(self, ts: datetime) -> tuple[bool, date]:
        local = (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).astimezone(self._tz)
        hour = local.hour + local.minute / 60
        start, end = self.policy.night_start_h, self.policy.night_end_h
        night = (start <= hour or hour < end) if start > end else (start <= hour < end)
        return night, local.date()

    def is_night(self, ts: datetime) -> bool:
        return self._at(ts)[0]

    def night_and_date(self, ts: datetime, t: float) -> tuple[bool, date]:
        """Cached per minute: a fix a second costs one time-zone conversion a minute."""
        minute = int(t // 60)
        if minute != self._minute:
            self._minute = minute
            self._night, self._date = self._at(ts)
        return self._night, self._date


class DrivingClock:
    """Continuous driving since the last rest, its night part, and driving today."""

    def __init__(self, policy: DrivingPolicy, night_limited: bool, local: LocalTime) -> None:
        self.policy = policy
        self.night_limited = night_limited  # the 2 h night rule applies to this class
        self.local = local
        self.continuous_s = 0.0
        self.night_continuous_s = 0.0
        self.today_s = 0.0
        self.total_s = 0.0  # all driving this clock has seen (for per-driver rates)
        self.stopped_s = 0.0  # current stop so far
        self._today = date.min
        self._prev: tuple[float, bool, bool] | None = None  # t, moving, night
        self._fired = False  # the limit alarm of this stint went out

    def update(self, ts: datetime, t: float, moving: bool) -> str | None:
        """Account up to this fix; the limit reached (once per stint), if any."""
        night, today = self.local.night_and_date(ts, t)
        prev, self._prev = self._prev, (t, moving, night)
        if prev is not None:
            self._account(t - prev[0], prev[1], prev[2])
        if today != self._today:  # the interval just closed belonged to the day before
            self._today, self.today_s = today, 0.0
        return self._check() if moving else None

    def _account(self, dt: float, moving: bool, night: bool) -> None:
        if moving and dt <= self.policy.max_fix_gap_s:
            self.stopped_s = 0.0
            self.continuous_s += dt
            self.today_s += dt
            self.total_s += dt
            if night:
                self.night_continuous_s += dt
        else:
            self.stopped_s += dt
            if self.stopped_s >= self.policy.rest_s:
                self.continuous_s = self.night_continuous_s = 0.0
                self._fired = False

    def _check(self) -> str | None:
        if self._fired:
            return None
        p = self.policy
        if self.continuous_s >= p.continuous_limit_s:
            self._fired = True
            return CONTINUOUS
        if self.night_limited and self.night_continuous_s >= p.night_limit_s:
            self._fired = True
            return NIGHT
        return None
