"""Typed request state of the insurers' API."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from telematics.insurer.model import KeyIdentity
from telematics.insurer.scoring import RiskWeights


@dataclass
class AccessNote:
    """What a request returned, for the access log (handlers fill it in)."""

    vehicle_ids: set[str] = field(default_factory=set)
    items: int = 0

    def saw(self, vehicle_ids: set[str] | list[str], items: int) -> None:
        self.vehicle_ids.update(vehicle_ids)
        self.items += items


IDENTITY = web.RequestKey("insurer_identity", KeyIdentity)
ACCESS = web.RequestKey("insurer_access", AccessNote)
WEIGHTS = web.AppKey("insurer_weights", RiskWeights)
