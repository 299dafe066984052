"""Spatial index over zones for the per-fix hot path (pure; shapely 2 STRtree).

An index is immutable: zone edits build a new one and swap it in (``GeofenceTracker.
replace_index``). Queries are one STRtree call plus, near zones only, one vectorised
point-in-polygon test on prepared geometries, so a fix far from every zone costs a few µs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import shapely
from numpy.typing import NDArray

from telematics.geo.zones import Zone, ZoneError


class ZoneIndex:
    """Zones by id plus an STRtree over their geometries.

    ``version`` is an opaque label of the zone set it was built from (the store's
    ``zones_version``), so a poller can tell whether to rebuild.
    """

    __slots__ = ("_by_id", "_geoms", "_tree", "_zones", "version")

    def __init__(self, zones: Iterable[Zone] = (), version: str = "") -> None:
        self._zones: tuple[Zone, ...] = tuple(zones)
        self._by_id: dict[str, Zone] = {}
        for zone in self._zones:
            if zone.id in self._by_id:
                raise ZoneError("id", "duplicate in the index", zone.id)
            self._by_id[zone.id] = zone
        self._geoms = np.array([z.geometry for z in self._zones], dtype=object)
        self._tree = shapely.STRtree(self._geoms) if self._zones else None
        self.version = version

    @property
    def zones(self) -> tuple[Zone, ...]:
        return self._zones

    def __len__(self) -> int:
        return len(self._zones)

    def __iter__(self) -> Iterator[Zone]:
        return iter(self._zones)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._by_id

    def get(self, zone_id: str) -> Zone | None:
        return self._by_id.get(zone_id)

    def _pick(self, idx: NDArray[np.intp]) -> list[Zone]:
        if idx.size > 1:
            idx = np.sort(idx)
        zones = self._zones
        return [zones[i] for i in idx.tolist()]

    def _containing_idx(self, lon: float, lat: float) -> NDArray[np.intp]:
        assert self._tree is not None
        cand: NDArray[np.intp] = self._tree.query(shapely.Point(lon, lat))  # bounding boxes
        if cand.size:
            cand = cand[shapely.intersects_xy(self._geoms[cand], lon, lat)]
        return cand

    def containing(self, lon: float, lat: float) -> list[Zone]:
        """Zones containing the point (a point on the boundary counts as inside)."""
        if self._tree is None:
            return []
        return self._pick(self._containing_idx(lon, lat))

    def _crossed_idx(self, lon0: float, lat0: float, lon1: float, lat1: float) -> NDArray[np.intp]:
        assert self._tree is not None
        if lon0 == lon1 and lat0 == lat1:
            return self._containing_idx(lon1, lat1)
        segment = shapely.linestrings(np.array(((lon0, lat0), (lon1, lat1))))
        found: NDArray[np.intp] = self._tree.query(segment, predicate="intersects")
        return found

    def crossed(self, lon0: float, lat0: float, lon1: float, lat1: float) -> list[Zone]:
        """Zones the straight segment between two fixes touches, endpoints included.

        This finds a zone lying wholly between two fixes, however small the zone or far
        apart the fixes.
        """
        if self._tree is None:
            return []
        return self._pick(self._crossed_idx(lon0, lat0, lon1, lat1))

    def step(
        self, lon0: float, lat0: float, lon1: float, lat1: float
    ) -> tuple[list[Zone], list[Zone]]:
        """``(crossed(...), containing(lon1, lat1))`` with a single tree query."""
        if self._tree is None:
            return [], []
        idx = self._crossed_idx(lon0, lat0, lon1, lat1)
        if idx.size == 0:
            return [], []
        if idx.size > 1:
            idx = np.sort(idx)
        inside = idx[shapely.intersects_xy(self._geoms[idx], lon1, lat1)]
        zones = self._zones
        return [zones[i] for i in idx.tolist()], [zones[i] for i in inside.tolist()]
