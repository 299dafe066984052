"""Per-vehicle geofence state: enter / exit / dwell from a stream of fixes (pure).

Rules, for each new fix (``update``):

* **Crossings use the segment** from the previous fix, so a fast vehicle cannot jump a
  small zone: a zone the segment touches but that contains neither fix was passed
  through, and is reported in both ``entered`` and ``exited`` of that one step.
* ``entered``: zones the segment crossed or the new fix is in that the vehicle was not
  inside before. ``exited``: zones it was inside that no longer contain the new fix, plus
  the pass-throughs. A point on a zone's boundary counts as inside.
* ``dwelling``: a zone the vehicle has been inside for its ``dwell_s`` (else the tracker's
  ``default_dwell_s``), reported once per visit, counted from the first fix inside.
* ``speed_limit_kmh``: the lowest limit among the zones the vehicle is inside now.
* **First fix** after creation (a new connection or a restarted server): zones it is in
  are reported ``inside`` only, never ``entered``. We cannot tell whether the vehicle
  just drove in or was parked there overnight, and a restart must not flood the
  dispatcher with "entered depot" for the whole fleet. Their dwell clock starts then.
* **Out-of-order fixes** (older than the previous one, e.g. a replayed batch) change
  nothing and report the current ``inside`` set without transitions.
* **Gaps**: when fixes are more than ``max_gap_s`` apart (unit off, long outage), the
  straight line between them is fiction; only the zones containing each fix are compared
  (no pass-throughs). ``None`` disables the check.
* **Zone edits** (``replace_index``) take effect at the next fix: state is kept by zone
  id (entry time, dwell reported), a vehicle now inside a new or enlarged zone gets
  ``entered``, one left outside a shrunk zone gets ``exited``; a deleted zone is dropped
  without an exit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from telematics.geo.context import NO_ZONES, ZoneContext, ZoneRef
from telematics.geo.index import ZoneIndex
from telematics.geo.zones import Zone


class _Visit:
    __slots__ = ("dwell_reported", "since", "zone")

    def __init__(self, zone: Zone, since: datetime, dwell_reported: bool = False) -> None:
        self.zone = zone
        self.since = since
        self.dwell_reported = dwell_reported


class GeofenceTracker:
    """Geofence state of one vehicle; feed it the vehicle's fixes in order."""

    __slots__ = (
        "_index",
        "_inside",
        "_last",
        "_max_gap",
        "_steady",
        "default_dwell_s",
    )

    def __init__(
        self,
        index: ZoneIndex,
        default_dwell_s: float = 60.0,
        max_gap_s: float | None = 300.0,
    ) -> None:
        self._index = index
        self.default_dwell_s = default_dwell_s
        # kept as a timedelta: compared with each fix's, no float conversion per fix
        self._max_gap = None if max_gap_s is None else timedelta(seconds=max_gap_s)
        self._inside: dict[str, _Visit] = {}
        self._last: tuple[datetime, float, float] | None = None
        # The context to return while nothing changes (no transition, no pending dwell).
        self._steady: ZoneContext | None = NO_ZONES

    @property
    def max_gap_s(self) -> float | None:
        return None if self._max_gap is None else self._max_gap.total_seconds()

    @property
    def index(self) -> ZoneIndex:
        return self._index

    @property
    def last_fix(self) -> tuple[datetime, float, float] | None:
        """``(ts, lon, lat)`` of the last fix taken, or None before the first."""
        return self._last

    def inside_since(self) -> dict[str, datetime]:
        """Zone id → time of the first fix inside, for the zones the vehicle is in."""
        return {zid: v.since for zid, v in self._inside.items()}

    def replace_index(self, index: ZoneIndex) -> None:
        """Swap in a rebuilt index (zones edited live); keeps the state by zone id."""
        self._index = index
        kept: dict[str, _Visit] = {}
        for zid, visit in self._inside.items():
            zone = index.get(zid)
            if zone is not None:
                visit.zone = zone
                kept[zid] = visit
        self._inside = kept
        self._steady = None

    def update(self, ts: datetime, lon: float, lat: float) -> ZoneContext:
        """Take one fix; returns the zones it is in and the transitions since the last one."""
        last = self._last
        if last is not None and ts < last[0]:
            return self._context((), (), ())
        self._last = (ts, lon, lat)
        inside = self._inside
        index = self._index

        if last is None:  # first fix: inside only (see the module docstring)
            for zone in index.containing(lon, lat):
                inside[zone.id] = _Visit(zone, ts)
            self._steady = None
            return self._finish(ts, (), ())

        t0, lon0, lat0 = last
        gap = self._max_gap
        if gap is not None and ts - t0 > gap:
            crossed: list[Zone] = []
            now_in = index.containing(lon, lat)
        else:
            crossed, now_in = index.step(lon0, lat0, lon, lat)

        if not crossed and not now_in and not inside:
            return NO_ZONES  # the common case: nowhere near any zone

        now_ids = {z.id for z in now_in}
        entered: list[ZoneRef] = []
        exited: list[ZoneRef] = []
        for zone in now_in:
            if zone.id not in inside:
                inside[zone.id] = _Visit(zone, ts)
                entered.append(zone.ref)
        for zid in [zid for zid in inside if zid not in now_ids]:
            exited.append(inside.pop(zid).zone.ref)
        if len(crossed) > len(now_in):  # pass-through: the segment touched it, no fix inside
            left = {r.id for r in exited}
            for zone in crossed:
                if zone.id not in now_ids and zone.id not in left:
                    entered.append(zone.ref)
                    exited.append(zone.ref)
        if entered or exited:
            self._steady = None
        return self._finish(ts, tuple(entered), tuple(exited))

    def _finish(
        self, ts: datetime, entered: tuple[ZoneRef, ...], exited: tuple[ZoneRef, ...]
    ) -> ZoneContext:
        if self._steady is not None and not entered and not exited:
            return self._steady
        dwelling: list[ZoneRef] = []
        pending = False
        for visit in self._inside.values():
            if visit.dwell_reported:
                continue
            delay = visit.zone.dwell_s
            if delay is None:
                delay = self.default_dwell_s
            if (ts - visit.since).total_seconds() >= delay:
                visit.dwell_reported = True
                dwelling.append(visit.zone.ref)
            else:
                pending = True
        context = self._context(entered, exited, tuple(dwelling))
        if not entered and not exited and not dwelling and not pending:
            self._steady = context
        else:
            self._steady = None
        return context

    def _context(
        self,
        entered: tuple[ZoneRef, ...],
        exited: tuple[ZoneRef, ...],
        dwelling: tuple[ZoneRef, ...],
    ) -> ZoneContext:
        if not self._inside and not entered and not exited:
            return NO_ZONES
        refs = tuple(v.zone.ref for v in self._inside.values())
        limits = [r.speed_limit_kmh for r in refs if r.speed_limit_kmh is not None]
        return ZoneContext(
            inside=refs,
            entered=entered,
            exited=exited,
            dwelling=dwelling,
            speed_limit_kmh=min(limits) if limits else None,
        )
