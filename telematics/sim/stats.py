"""Live counters of a simulated fleet, read by the demo and the benchmark while it runs."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telematics.sim.outbox import Outbox

#: Names accepted by :meth:`FleetStats.percentile`.
_ALIASES = {
    "ack": "ack_latency_s",
    "ack_latency": "ack_latency_s",
    "ack_latency_s": "ack_latency_s",
    "event": "event_to_intervention_s",
    "intervention": "event_to_intervention_s",
    "event_to_intervention": "event_to_intervention_s",
    "event_to_intervention_s": "event_to_intervention_s",
}


class Reservoir:
    """A bounded uniform sample of a latency series (seconds) plus the latest values.

    Keeps up to ``capacity`` samples chosen uniformly from everything recorded
    (Vitter's algorithm R), the exact count, mean and maximum, and the most recent
    ``recent`` samples for "right now" percentiles.
    """

    __slots__ = ("_dirty", "_rng", "_sorted", "capacity", "count", "max", "recent", "samples",
                 "total")  # fmt: skip

    def __init__(self, capacity: int = 65_536, recent: int = 4096, seed: int = 0) -> None:
        self.capacity = capacity
        self.samples: list[float] = []
        self.recent: deque[float] = deque(maxlen=recent)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self._rng = random.Random(seed)
        self._sorted: list[float] | None = None
        self._dirty = False

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        self.recent.append(value)
        if len(self.samples) < self.capacity:
            self.samples.append(value)
        else:
            j = self._rng.randrange(self.count)
            if j < self.capacity:
                self.samples[j] = value
        self._dirty = True

    def extend(self, values: list[float]) -> None:
        for v in values:
            self.add(v)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[float]:
        return iter(self.samples)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentile(self, p: float, recent: bool = False) -> float | None:
        """The ``p``-th percentile (0–100, linear interpolation); None without samples."""
        if recent:
            data = sorted(self.recent)
        else:
            if self._dirty or self._sorted is None:
                self._sorted = sorted(self.samples)
                self._dirty = False
            data = self._sorted
        return _percentile(data, p)


def _percentile(data: list[float], p: float) -> float | None:
    if not data:
        return None
    p = min(100.0, max(0.0, p))
    k = (len(data) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


class FleetStats:
    """Counters shared by all units of a fleet (single event loop, no locking).

    ``connected`` is the number of units with a welcomed connection right now.
    ``items_sent`` counts first transmissions; replays after a reconnect are counted in
    ``items_resent``. ``items_acked`` counts items the server acknowledged (by ``ack``
    or a ``welcome``'s ``last_seq``); ``items_dropped`` those lost to a full outbox.
    ``frames_sent`` counts data frames (not ``intervention_ack``s). ``errors_by_code``
    counts the server's ``error`` frames by code; ``unknown_frames`` anything else the
    units could not use. ``reconnects`` counts welcomed connections after a unit's first.
    ``ack_latency_s`` (send of a frame → the ack covering it) and
    ``event_to_intervention_s`` (send of the frame holding ``cause.seq`` → intervention)
    are :class:`Reservoir` samples in seconds.
    """

    def __init__(self) -> None:
        self.units = 0
        self.connected = 0
        self.ever_connected = 0
        self.items_generated = 0
        self.items_sent = 0
        self.items_resent = 0
        self.items_acked = 0
        self.items_dropped = 0  # outbox overflow
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_received = 0
        self.acks_received = 0
        self.events_generated = 0
        self.events_sent = 0
        self.interventions_received = 0
        self.interventions_duplicate = 0
        self.intervention_acks_sent: dict[str, int] = {}
        self.errors_by_code: dict[str, int] = {}
        self.unknown_frames = 0
        self.reconnects = 0
        self.forced_drops = 0
        self.connect_failures = 0
        self.connect_errors: dict[str, int] = {}  # e.g. http_401, ConnectionRefusedError
        self.ack_latency_s = Reservoir(seed=1)
        self.event_to_intervention_s = Reservoir(seed=2)
        self.loop_lag_ms: dict[str, float] | None = None  # the generator's own loop (cli)
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.steady_from: float | None = None  # end of the warm-up, when one was asked for
        self.steady_until: float | None = None  # start of the drain
        self._acked_at_steady = 0
        self._acked_at_drain = 0
        self._outboxes: dict[str, Outbox] = {}  # vehicle → its unit's outbox

    def start_steady(self) -> None:
        """End of the warm-up: latencies from here on only, and a steady-state rate."""
        self.steady_from = time.time()
        self._acked_at_steady = self.items_acked
        self.ack_latency_s = Reservoir(seed=1)
        self.event_to_intervention_s = Reservoir(seed=2)

    def end_steady(self) -> None:
        """Generation stops (drain): the steady-state rate ends here."""
        self.steady_until = time.time()
        self._acked_at_drain = self.items_acked

    # -- recording -------------------------------------------------------------------

    def register_outbox(self, vehicle_id: str, outbox: Outbox) -> None:
        """Let :meth:`unacked_items` and :meth:`held_seqs` see a unit's outbox."""
        self._outboxes[vehicle_id] = outbox

    def count_error(self, code: str) -> None:
        self.errors_by_code[code] = self.errors_by_code.get(code, 0) + 1

    def count_connect_error(self, reason: str) -> None:
        self.connect_errors[reason] = self.connect_errors.get(reason, 0) + 1

    def count_intervention_ack(self, status: str) -> None:
        self.intervention_acks_sent[status] = self.intervention_acks_sent.get(status, 0) + 1

    # -- reading ---------------------------------------------------------------------

    def percentile(self, which: str, p: float, recent: bool = False) -> float | None:
        """Percentile ``p`` (0–100) in seconds of ``"ack"`` latency or ``"event"`` →
        intervention latency (full names ``ack_latency_s``/``event_to_intervention_s``
        work too); ``recent=True`` uses only the latest few thousand samples."""
        name = _ALIASES.get(which)
        if name is None:
            raise ValueError(f"unknown latency series {which!r}; use 'ack' or 'event'")
        reservoir: Reservoir = getattr(self, name)
        return reservoir.percentile(p, recent)

    def unacked_items(self) -> int:
        """Items generated and not (yet) acknowledged, over all units' outboxes."""
        return sum(map(len, self._outboxes.values()))

    def held_seqs(self) -> dict[str, range]:
        """Per vehicle, the seqs its unit still holds (unacknowledged). Every seq below
        the range was acknowledged by the server, unless the outbox overflowed
        (``items_dropped``); the range ends at the next seq the unit will generate."""
        return {vehicle: box.held_seqs() for vehicle, box in self._outboxes.items()}

    @property
    def elapsed_s(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(1e-9, end - self.started_at)

    def _steady_rate(self) -> float | None:
        if self.steady_from is None:
            return None
        end = self.steady_until or self.finished_at or time.time()
        acked = self._acked_at_drain if self.steady_until else self.items_acked
        return round((acked - self._acked_at_steady) / max(end - self.steady_from, 1e-9), 1)

    def latency_samples(self) -> dict[str, Any]:
        """The uniform samples behind the latency percentiles, with the counts they stand
        for (to merge several generators' runs)."""
        return {
            "ack_s": self.ack_latency_s.samples,
            "ack_count": self.ack_latency_s.count,
            "event_to_intervention_s": self.event_to_intervention_s.samples,
            "event_to_intervention_count": self.event_to_intervention_s.count,
        }

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready summary (the simulator prints it at the end)."""
        elapsed = self.elapsed_s

        def ms(which: str, p: float) -> float | None:
            v = self.percentile(which, p)
            return None if v is None else round(v * 1000.0, 2)

        def series(which: str, r: Reservoir) -> dict[str, Any]:
            mean = r.mean
            return {
                "count": r.count,
                "mean_ms": None if mean is None else round(mean * 1000.0, 2),
                "p50_ms": ms(which, 50),
                "p90_ms": ms(which, 90),
                "p99_ms": ms(which, 99),
                "max_ms": round(r.max * 1000.0, 2) if r.count else None,
            }

        return {
            "elapsed_s": round(elapsed, 3),
            "units": self.units,
            "connected": self.connected,
            "ever_connected": self.ever_connected,
            "items_generated": self.items_generated,
            "items_sent": self.items_sent,
            "items_resent": self.items_resent,
            "items_acked": self.items_acked,
            "items_dropped": self.items_dropped,
            "unacked_items": self.unacked_items(),
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "frames_received": self.frames_received,
            "acks_received": self.acks_received,
            "events_generated": self.events_generated,
            "events_sent": self.events_sent,
            "interventions_received": self.interventions_received,
            "interventions_duplicate": self.interventions_duplicate,
            "intervention_acks_sent": dict(self.intervention_acks_sent),
            "errors_by_code": dict(self.errors_by_code),
            "unknown_frames": self.unknown_frames,
            "reconnects": self.reconnects,
            "forced_drops": self.forced_drops,
            "connect_failures": self.connect_failures,
            "connect_errors": dict(self.connect_errors),
            "items_acked_per_s": round(self.items_acked / elapsed, 1),
            "steady_acked_per_s": self._steady_rate(),
            "frames_sent_per_s": round(self.frames_sent / elapsed, 1),
            "ack_latency": series("ack", self.ack_latency_s),
            "event_to_intervention": series("event", self.event_to_intervention_s),
            "loop_lag_ms": self.loop_lag_ms,
        }
