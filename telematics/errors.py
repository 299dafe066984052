"""One exception hierarchy for the whole service.

    TelematicsError
    ├── ConfigError          bad or missing setting
    ├── DeviceInputError     the peer's fault: a frame or item we will not take
    │   └── ItemError        one field of one item is wrong (carries the field name)
    ├── UnknownVehicle       no such vehicle / token
    ├── StorageError         the database refused or failed
    └── UsageError           our own misuse of an API (a bug, never the peer's fault)

Peer errors never escape a connection handler: they become ``error`` frames and a
row in ``rejected_items``. Only ``UsageError`` means a bug in this code base.
"""

from __future__ import annotations


class TelematicsError(Exception):
    """Base class of every error raised on purpose by this package."""


class ConfigError(TelematicsError):
    """A setting is missing or malformed."""


class DeviceInputError(TelematicsError):
    """A device sent something the protocol does not allow.

    ``code`` is the protocol error code sent back to the unit (``bad_json``,
    ``unknown_type``, ``invalid_item``, ``rate_limited``).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ItemError(DeviceInputError):
    """One field of one item is invalid; the message starts with the field name."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__("invalid_item", f"{field}: {problem}")
        self.field = field
        self.problem = problem


class UnknownVehicle(TelematicsError):
    """The vehicle or device token is not registered (or was revoked)."""


class StorageError(TelematicsError):
    """The database failed or refused a write."""


class UsageError(TelematicsError):
    """Our own code called an API wrongly."""


def shown(value: object, limit: int = 40) -> str:
    """``value`` quoted for an error message, cut short: a one-line error stays one line
    (an id or name of megabytes must not be echoed back whole)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
