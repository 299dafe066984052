"""Feed cursors: an opaque token for a position (xid, id) in ``alarm_changes``."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from telematics.insurer.model import InsurerError


class BadCursor(InsurerError):
    """The cursor was not issued by this feed."""


@dataclass(frozen=True, order=True, slots=True)
class Position:
    xid: int  # the writing transaction (xid8)
    id: int  # the row's serial within it

    def encode(self) -> str:
        raw = f"c1.{self.xid}.{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


START = Position(0, 0)


def decode(token: str | None) -> Position:
    """The position after which to read; no token: the beginning of the feed."""
    if not token:
        return START
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, xid, row = raw.split(".")
        if tag != "c1":
            raise ValueError(tag)
        position = Position(int(xid), int(row))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("cursor: not a cursor of this feed") from None
    if position.xid < 0 or position.id < 0 or position.xid >= 1 << 64 or position.id >= 1 << 63:
        raise BadCursor("cursor: not a cursor of this feed")
    return position
