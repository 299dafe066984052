"""A unit's outbox: numbered, encoded, unacknowledged items and frames in flight (pure).

Items are numbered with consecutive ``seq`` values and encoded once (orjson); frames
are built by joining the encoded items, so a replay after a reconnect costs no
re-encoding. The outbox holds items from the oldest unacknowledged one up to the newest
(a contiguous range of seq); ``ack`` drops a prefix, ``welcome`` drops a prefix and
rewinds the send position to resend everything still held. When more than ``cap``
items are held the oldest are dropped (and counted) so memory stays bounded.

Frames in flight are tracked with their send time to measure ack latency and to let
the unit keep at most ``window`` frames unacknowledged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

MAX_BATCH_ITEMS = 1000  # protocol limit
MAX_FRAME_BYTES = 240 * 1024  # below the protocol's 256 KiB frame limit, with headroom
_BATCH_HEAD = b'{"type":"batch","items":['
_BATCH_TAIL = b"]}"


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes
    first_seq: int
    last_seq: int
    new_items: int  # items sent for the first time
    event_seqs: tuple[int, ...]  # seqs of event items in the frame

    @property
    def items(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True, slots=True)
class AckResult:
    acked: int  # items dropped from the outbox
    latencies: list[float]  # send→ack seconds of the frames this ack completed


class Outbox:
    """Unacked items of one vehicle; see the module docstring."""

    __slots__ = (
        "_base",
        "_data",
        "_ev",
        "_inflight",
        "_max_sent",
        "_off",
        "_sent",
        "cap",
        "dropped",
        "started",
    )

    def __init__(self, cap: int = 100_000, first_seq: int = 1) -> None:
        self.cap = cap
        self._data: list[bytes] = []  # encoded items; _data[i] has seq _base + i
        self._ev = bytearray()  # 1 where the item is an event
        self._base = first_seq
        self._off = 0  # index of the oldest unacked item
        self._sent = 0  # index of the first item not sent on this connection
        self._max_sent = first_seq - 1  # highest seq ever sent (to tell resends apart)
        self._inflight: deque[tuple[int, float]] = deque()  # (last seq, send time)
        self.dropped = 0  # items dropped because the outbox was full
        self.started = False  # numbering fixed by the first welcome

    # -- numbering -----------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._base + len(self._data)

    @property
    def first_unacked_seq(self) -> int:
        return self._base + self._off

    def __len__(self) -> int:
        """Items held (generated and not yet acknowledged or dropped)."""
        return len(self._data) - self._off

    @property
    def unsent(self) -> int:
        return len(self._data) - self._sent

    @property
    def inflight(self) -> int:
        """Frames sent on this connection and not yet completely acknowledged."""
        return len(self._inflight)

    def has_unsent_event(self) -> bool:
        return 1 in self._ev[self._sent :]

    def start(self, last_seq: int) -> None:
        """Number new items after the server's ``last_seq`` (first welcome of a run)."""
        if not self.started:
            self.started = True
            if len(self._data) == 0 and last_seq + 1 > self._base:
                self._base = last_seq + 1
                self._max_sent = last_seq

    def add(self, item: dict[str, Any]) -> int:
        """Number ``item`` (sets its ``seq``), encode and hold it; returns the seq."""
        seq = self._base + len(self._data)
        item["seq"] = seq
        # orjson's result keeps a ~4 KiB allocation alive; a compact copy keeps a large
        # outbox small (100k held items: ~30 MB instead of ~400 MB)
        self._data.append(memoryview(orjson.dumps(item)).tobytes())
        self._ev.append(item["type"] == "event")
        if len(self._data) - self._off > self.cap:
            self._drop_oldest()
        return seq

    def _drop_oldest(self) -> None:
        self._off += 1
        self.dropped += 1
        if self._sent < self._off:
            self._sent = self._off
        self._compact()

    def _compact(self) -> None:
        off = self._off
        if off > 256 and off * 2 > len(self._data):
            del self._data[:off]
            del self._ev[:off]
            self._base += off
            self._sent -= off
            self._off = 0

    # -- server messages -----------------------------------------------------------

    def ack(self, seq: int, now: float) -> AckResult:
        """Drop items with seq ≤ ``seq``; latencies of the frames completed by it."""
        acked = self._drop_through(seq)
        latencies: list[float] = []
        inflight = self._inflight
        while inflight and inflight[0][0] <= seq:
            latencies.append(now - inflight.popleft()[1])
        return AckResult(acked, latencies)

    def welcome(self, last_seq: int) -> int:
        """A new connection: drop what the server holds, rewind to resend the rest."""
        self.start(last_seq)
        acked = self._drop_through(last_seq)
        self._inflight.clear()
        self._sent = self._off
        return acked

    def _drop_through(self, seq: int) -> int:
        first = self._base + self._off
        if seq < first:
            return 0
        held = len(self._data) - self._off
        n = min(seq - first + 1, held)
        self._off += n
        if self._sent < self._off:
            self._sent = self._off
        if n == held and seq >= self.next_seq:
            # the server knows seqs we never generated (another process used this token):
            # continue numbering after them so nothing new looks like a duplicate
            self._data.clear()
            self._ev.clear()
            self._base = seq + 1
            self._off = self._sent = 0
            self._max_sent = max(self._max_sent, seq)
        else:
            self._compact()
        return n

    # -- sending -------------------------------------------------------------------

    def take_frame(self, max_items: int, now: float) -> Frame | None:
        """The next frame of up to ``max_items`` unsent items, registered as in flight.

        One item is sent as itself (a ``telemetry`` or ``event`` frame), several as a
        ``batch`` (at most 1000 items and about 240 KiB).
        """
        start = self._sent
        avail = len(self._data) - start
        if avail <= 0:
            return None
        n = min(avail, max_items, MAX_BATCH_ITEMS)
        data = self._data
        if n == 1:
            payload = data[start]
        else:
            chunk = data[start : start + n]
            size = sum(map(len, chunk))
            while size > MAX_FRAME_BYTES and n > 1:
                n = max(1, n // 2)
                chunk = chunk[:n]
                size = sum(map(len, chunk))
            payload = chunk[0] if n == 1 else _BATCH_HEAD + b",".join(chunk) + _BATCH_TAIL
        first = self._base + start
        last = first + n - 1
        self._sent = start + n
        ev = self._ev
        if n == 1:
            events: tuple[int, ...] = (first,) if ev[start] else ()
        elif 1 in ev[start : start + n]:
            events = tuple(first + i for i in range(n) if ev[start + i])
        else:
            events = ()
        new = last - max(first - 1, self._max_sent)
        if new > 0:
            self._max_sent = last
        else:
            new = 0
        self._inflight.append((last, now))
        return Frame(payload, first, last, new, events)

    def held_seqs(self) -> range:
        """The seqs currently held (for tests and diagnostics)."""
        return range(self._base + self._off, self._base + len(self._data))

    def item(self, seq: int) -> bytes:
        """The encoded item with ``seq`` (must be held)."""
        return self._data[seq - self._base]
