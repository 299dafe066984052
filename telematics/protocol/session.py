"""Per-connection protocol state, sans I/O: seq bookkeeping, duplicates, errors, acks.

A :class:`DeviceSession` is fed the text of each frame and returns what to store and
what to send back. It never touches a socket or the database; the connection handler
(``telematics.ingest.device``) drives it, like websockets' ``Protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from telematics.protocol.decode import decode_frame
from telematics.protocol.messages import (
    DataItem,
    DeviceEvent,
    InterventionAck,
    Rejection,
    Telemetry,
)

CLOSE_POLICY_VIOLATION = 1008
_GARBAGE_CODES = frozenset(("bad_json", "unknown_type"))


@dataclass(slots=True, init=False)
class Inbound:
    """The outcome of one frame."""

    items: list[DataItem]  # new, in seq order
    rejected: list[Rejection]  # to keep for inspection
    intervention_acks: list[InterventionAck]
    replies: list[dict[str, Any]]  # frames to send now
    duplicates: int
    close_code: int | None

    def __init__(self) -> None:
        # Written out: one per frame, and the generated __init__ calls a default_factory
        # per list (twice the cost).
        self.items = []
        self.rejected = []
        self.intervention_acks = []
        self.replies = []
        self.duplicates = 0
        self.close_code = None


def error_frame(rejection: Rejection) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": rejection.code}
    if rejection.seq is not None:
        frame["seq"] = rejection.seq
    frame["message"] = rejection.message
    return frame


class DeviceSession:
    """Sequence state of one unit's connection.

    ``stored_seq`` is the highest seq known to be committed or rejected (the welcome's
    ``last_seq``, then every ack); ``received_seq`` is the highest seq taken from this
    connection, stored or still on its way to the database.
    """

    def __init__(self, vehicle_id: str, stored_seq: int, garbage_limit: int = 50) -> None:
        self.vehicle_id = vehicle_id
        self.stored_seq = stored_seq
        self.received_seq = stored_seq
        self.garbage_limit = garbage_limit
        self._garbage_run = 0

    def welcome(self, server_time: str) -> dict[str, Any]:
        return {
            "type": "welcome",
            "vehicle_id": self.vehicle_id,
            "last_seq": self.stored_seq,
            "server_time": server_time,
        }

    def receive(self, data: str | bytes, now: datetime) -> Inbound:
        """Take one text frame."""
        out = Inbound()
        garbage = True
        for decoded in decode_frame(data, now):
            if isinstance(decoded, (Telemetry, DeviceEvent)):
                garbage = False
                self._take_item(decoded, out)
            elif isinstance(decoded, Rejection):
                garbage = garbage and decoded.code in _GARBAGE_CODES
                self._take_rejection(decoded, out)
            else:
                garbage = False
                out.intervention_acks.append(decoded)
        if out.duplicates and not out.items and self.received_seq == self.stored_seq:
            out.replies.append(self.ack_frame(self.stored_seq))  # nothing in flight: ack now
        self._garbage_run = self._garbage_run + 1 if garbage else 0
        if self._garbage_run >= self.garbage_limit:
            out.close_code = CLOSE_POLICY_VIOLATION
        return out

    def committed(self, seq: int) -> bool:
        """Everything up to ``seq`` is durable; True if that moves the acked position."""
        if seq <= self.stored_seq:
            return False
        self.stored_seq = seq
        return True

    @staticmethod
    def ack_frame(seq: int) -> dict[str, Any]:
        return {"type": "ack", "seq": seq}

    def _take_item(self, item: DataItem, out: Inbound) -> None:
        seq = item.seq
        if seq <= self.stored_seq:
            out.duplicates += 1
        elif seq <= self.received_seq:
            message = (
                f"seq: must increase; {seq} is not above {self.received_seq}, "
                "the last seq received on this connection"
            )
            self._take_rejection(Rejection("invalid_item", message, encode_item(item), seq), out)
        else:
            self.received_seq = seq
            out.items.append(item)

    def _take_rejection(self, rejection: Rejection, out: Inbound) -> None:
        seq = rejection.seq
        if seq is not None and seq <= self.stored_seq:
            out.duplicates += 1  # already consumed earlier: a replay, ack it again
            return
        if seq is not None and seq > self.received_seq:
            self.received_seq = seq  # a rejected seq counts as consumed
        out.rejected.append(rejection)
        out.replies.append(error_frame(rejection))


def ack_payload(seq: int) -> bytes:
    """``DeviceSession.ack_frame(seq)`` as JSON, written out: one goes out per unit and
    commit, and formatting it costs half as much as encoding the dict."""
    return b'{"type":"ack","seq":%d}' % seq


def encode_item(item: DataItem) -> bytes:
    """Re-serialise a decoded item (for keeping an item we refused after decoding)."""
    body: dict[str, Any] = {"type": "telemetry" if isinstance(item, Telemetry) else "event"}
    for name in item.__slots__:
        value = getattr(item, name)
        if value is not None and value != ():
            body[name] = value
    return orjson.dumps(body, default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "__slots__"):
        return {n: getattr(value, n) for n in value.__slots__}
    raise TypeError(f"cannot encode {type(value).__name__}")
