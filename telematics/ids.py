"""Record ids (alarms, tasks, escalation steps): 128 random bits as 32 hex digits.

The same shape as ``uuid4().hex`` without its system call: ``os.urandom`` releases the
GIL, and on the hot path the batch writer thread takes it meanwhile, so the event loop
waits to get it back (a frequent spot in stall traces at 5,000 units). ``random``'s
generator is seeded from the OS when the module loads and again in each forked worker,
so workers do not repeat each other's ids. Ids are not secrets: every read is checked
against the reader's fleets.
"""

from __future__ import annotations

import random

from telematics.protocol.limits import MAX_ID_LEN

_bits = random.getrandbits


def new_id() -> str:
    return f"{_bits(128):032x}"


def is_printable_id(value: object) -> bool:
    """True for a name-like id (vehicle, fleet, zone, insurer): 1–64 printable characters.

    Such ids go into CSV lines, headers, URLs and audit trails, so no control characters.
    """
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN and value.isprintable()
