"""What an insurer is allowed: consent scopes, key scopes, event types, and its coverage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from telematics.errors import TelematicsError

#: What a policy lets the insurer see of the covered vehicles.
CONSENTS = ("events", "locations", "evidence")
#: What an API key may call.
KEY_SCOPES = ("feed", "scores", "reports", "claims", "webhooks")
#: Webhook event types.
EVENT_TYPES = ("alarm.severe", "collision.detected", "evidence.ready")


class InsurerError(TelematicsError):
    """An insurer request that cannot be done as asked (bad scope, unknown insurer …)."""


class UnknownInsurer(InsurerError):
    """No such insurer, or the API key is unknown or revoked."""


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who is calling: the insurer behind an API key and what the key may do."""

    insurer_id: str
    prefix: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime  # exclusive


@dataclass(frozen=True)
class Coverage:
    """The vehicles an insurer sees now under one consent scope, with the periods of data
    its policies open (several policies may cover one vehicle)."""

    scope: str
    windows: dict[str, tuple[Window, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, scope: str, rows: Iterable[tuple[str, datetime, datetime]]) -> Coverage:
        grouped: dict[str, list[Window]] = {}
        for vehicle_id, start, end in rows:
            grouped.setdefault(vehicle_id, []).append(Window(start, end))
        return cls(scope, {v: tuple(sorted(w, key=lambda x: x.start)) for v, w in grouped.items()})

    @property
    def vehicle_ids(self) -> list[str]:
        return sorted(self.windows)

    def covers(self, vehicle_id: str, at: datetime | None = None) -> bool:
        windows = self.windows.get(vehicle_id, ())
        if at is None:
            return bool(windows)
        return any(w.start <= at < w.end for w in windows)

    def clip(self, vehicle_id: str, start: datetime, end: datetime) -> list[Window]:
        """The parts of ``[start, end)`` the insurer may see of the vehicle."""
        out = []
        for w in self.windows.get(vehicle_id, ()):
            lo, hi = max(start, w.start), min(end, w.end)
            if lo < hi:
                out.append(Window(lo, hi))
        return out

    def sql_arrays(self) -> tuple[list[str], list[datetime], list[datetime]]:
        """``text[]``, ``timestamptz[]``, ``timestamptz[]`` for ``unnest`` in a query."""
        flat = [(v, w) for v, ws in sorted(self.windows.items()) for w in ws]
        return [v for v, _ in flat], [w.start for _, w in flat], [w.end for _, w in flat]
