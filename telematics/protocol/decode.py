"""Pure decoding and validation of device frames (protocol v1).

``decode_frame`` turns one WebSocket text frame into typed items. It never raises
for bad input: every problem becomes a :class:`Rejection` carrying the protocol error
code, a message that starts with the offending field's name, the raw item and, where
it could be read, the item's ``seq`` (a rejected seq counts as consumed). Wholly valid
frames take a faster path (``fastpath.py``) that accepts a subset of what this module
does, with equal results.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from typing import Any

import orjson

from telematics.errors import DeviceInputError, ItemError
from telematics.protocol.fastpath import decode_valid
from telematics.protocol.limits import (
    MAX_BATCH_ITEMS,
    MAX_FUTURE,
    MAX_HEADING_DEG,
    MAX_ID_LEN,
    MAX_ODOMETER_KM,
    MAX_SEQ,
    MAX_SPEED_KMH,
    MAX_TIRES,
    TIRE_BATTERY_PCT,
    TIRE_KPA,
    TIRE_POS,
    TIRE_TEMP_C,
    json_blob_problem,
    ts_problem,
)
from telematics.protocol.messages import (
    EVENT_KINDS,
    INTERVENTION_STATUSES,
    DataItem,
    Decoded,
    DeviceEvent,
    InterventionAck,
    Rejection,
    Telemetry,
    TireReading,
)

log = logging.getLogger(__name__)

_TELEMETRY_KEYS = frozenset(
    (
        "type",
        "seq",
        "ts",
        "lat",
        "lon",
        "speed_kmh",
        "heading_deg",
        "driver_id",
        "ignition",
        "odometer_km",
        "tires",
    )
)
_EVENT_KEYS = frozenset(
    ("type", "seq", "ts", "kind", "level", "lat", "lon", "speed_kmh", "driver_id", "attrs")
)


def decode_frame(data: str | bytes, now: datetime) -> list[Decoded]:
    """Decode one text frame into items, acks and rejections, in frame order."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        valid = decode_valid(raw, now)
        if valid is not None:
            return valid  # the common case: nothing to reject, no dicts built
        return decode_checked(raw, now)
    except Exception:  # a decoder bug costs this frame (kept), not the unit's connection
        log.exception("decoding a frame failed")
        return [Rejection("invalid_item", "frame: the server failed to decode it", raw)]


def decode_checked(raw: bytes, now: datetime) -> list[Decoded]:
    """The checked path: field by field, naming the first problem of each item."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [_salvage_non_json(raw, now)]
    if not isinstance(obj, dict):
        return [Rejection("bad_json", "frame: must be a JSON object", raw)]
    kind = obj.get("type")
    if kind == "batch":
        return _decode_batch(obj, raw, now)
    if kind == "intervention_ack":
        return [_decode_intervention_ack(obj, raw)]
    return [decode_item(obj, raw, now)]


def decode_item(obj: dict[str, Any], raw: bytes | None, now: datetime) -> DataItem | Rejection:
    """Decode one telemetry or event object; a problem becomes a Rejection.

    ``raw`` is the item's own bytes when it was a whole frame; items of a batch are
    re-serialised only if they are rejected.
    """
    try:
        kind = obj.get("type")
        if kind == "telemetry":
            return _telemetry(obj, now)
        if kind == "event":
            return _event(obj, now)
        if kind is None:
            raise ItemError("type", "required")
        raise DeviceInputError("unknown_type", f"type: unknown message type {_show(kind)}")
    except DeviceInputError as exc:
        raw = orjson.dumps(obj) if raw is None else raw
        return Rejection(exc.code, exc.message, raw, _peek_seq(obj))


def _decode_batch(obj: dict[str, Any], raw: bytes, now: datetime) -> list[Decoded]:
    items = obj.get("items")
    if not isinstance(items, list):
        return [Rejection("invalid_item", "items: must be an array", raw)]
    if len(items) > MAX_BATCH_ITEMS:
        seqs = [s for s in map(_peek_seq, (i for i in items if isinstance(i, dict))) if s]
        message = f"items: at most {MAX_BATCH_ITEMS} items per batch, got {len(items)}"
        return [Rejection("invalid_item", message, raw, max(seqs, default=None))]
    out: list[Decoded] = []
    for item in items:
        if not isinstance(item, dict):
            out.append(
                Rejection(
                    "invalid_item", "items[]: each item must be an object", orjson.dumps(item)
                )
            )
        elif item.get("type") == "batch":
            out.append(
                Rejection(
                    "invalid_item",
                    "items[].type: a batch cannot nest a batch",
                    orjson.dumps(item),
                    _peek_seq(item),
                )
            )
        else:
            out.append(decode_item(item, None, now))
    return out


def _decode_intervention_ack(obj: dict[str, Any], raw: bytes) -> InterventionAck | Rejection:
    ident = obj.get("id")
    status = obj.get("status")
    if not isinstance(ident, str) or not ident or len(ident) > MAX_ID_LEN:
        return Rejection("invalid_item", "id: must be the intervention's id string", raw)
    if status not in INTERVENTION_STATUSES:
        allowed = ", ".join(INTERVENTION_STATUSES)
        return Rejection("invalid_item", f"status: must be one of {allowed}", raw)
    return InterventionAck(ident, status)


def _salvage_non_json(raw: bytes, now: datetime) -> Rejection:
    """Explain a frame orjson refused; NaN/Infinity get a field-level message and keep seq."""
    constants: list[str] = []

    def constant(name: str) -> float:
        constants.append(name)
        return float(name)

    try:
        # the stdlib accepts NaN and Infinity, which JSON does not
        obj = json.loads(raw, parse_constant=constant)
    except (ValueError, UnicodeDecodeError):
        return Rejection("bad_json", "frame: not valid JSON", raw)
    except RecursionError:  # orjson reads 1,024 levels; this was deeper, or invalid
        return Rejection("bad_json", "frame: not valid JSON, or nested too deeply", raw)
    if not constants:  # refused for something else, e.g. an unpaired UTF-16 surrogate
        return Rejection("bad_json", "frame: not valid JSON", raw)
    if isinstance(obj, dict):
        bad = [k for k, v in obj.items() if isinstance(v, float) and not math.isfinite(v)]
        field = bad[0] if bad else "frame"
        return Rejection("invalid_item", f"{field}: must be a finite number", raw, _peek_seq(obj))
    return Rejection("bad_json", "frame: not valid JSON (NaN or Infinity)", raw)


def _peek_seq(obj: dict[str, Any]) -> int | None:
    seq = obj.get("seq")
    if type(seq) is int and 1 <= seq <= MAX_SEQ:
        return seq
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- field readers -------------------------------------------------------------------


def _seq(obj: dict[str, Any]) -> int:
    seq = obj.get("seq")
    if seq is None:
        raise ItemError("seq", "required")
    if type(seq) is not int:
        raise ItemError("seq", "must be an integer")
    if not 1 <= seq <= MAX_SEQ:
        raise ItemError("seq", "must be between 1 and 2^63-1")
    return seq


def _ts(obj: dict[str, Any], now: datetime) -> datetime:
    value = obj.get("ts")
    if value is None:
        raise ItemError("ts", "required")
    if not isinstance(value, str):
        raise ItemError("ts", "must be an RFC 3339 string")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ItemError("ts", "must be an RFC 3339 time, e.g. 2026-11-26T08:00:00Z") from None
    problem = ts_problem(ts, now + MAX_FUTURE)
    if problem is not None:
        raise ItemError("ts", problem)
    return ts


def _number(obj: dict[str, Any], name: str, lo: float, hi: float) -> float:
    value = obj.get(name)
    if value is None:
        raise ItemError(name, "required")
    return _check_number(name, value, lo, hi)


def _opt_number(obj: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = obj.get(name)
    return None if value is None else _check_number(name, value, lo, hi)


def _check_number(name: str, value: Any, lo: float, hi: float) -> float:
    kind = type(value)
    if kind is not float and kind is not int:
        raise ItemError(name, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise ItemError(name, "must be a finite number")
    if not lo <= number <= hi:
        raise ItemError(name, f"must be between {lo:g} and {hi:g}")
    return number


def _opt_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ItemError(name, "must be a string")
    if not value or len(value) > MAX_ID_LEN or "\x00" in value:
        raise ItemError(name, f"must be 1–{MAX_ID_LEN} characters without NUL")
    return value


def _extra(obj: dict[str, Any], known: frozenset[str]) -> dict[str, Any] | None:
    if known.issuperset(obj):
        return None
    extra = {k: v for k, v in obj.items() if k not in known}
    _check_json_blob("(extra fields)", extra)
    return extra


def _check_json_blob(name: str, value: dict[str, Any]) -> None:
    problem = json_blob_problem(value)
    if problem is not None:
        raise ItemError(name, problem)


def _position(obj: dict[str, Any]) -> tuple[float, float, float]:
    return (
        _number(obj, "lat", -90.0, 90.0),
        _number(obj, "lon", -180.0, 180.0),
        _number(obj, "speed_kmh", 0.0, MAX_SPEED_KMH),
    )


def _tires(obj: dict[str, Any]) -> tuple[TireReading, ...]:
    tires = obj.get("tires")
    if tires is None:
        return ()
    if not isinstance(tires, list):
        raise ItemError("tires", "must be an array")
    if len(tires) > MAX_TIRES:
        raise ItemError("tires", f"at most {MAX_TIRES} tires")
    out = []
    for i, tire in enumerate(tires):
        field = f"tires[{i}]"
        if not isinstance(tire, dict):
            raise ItemError(field, "must be an object")
        pos = tire.get("pos")
        if not isinstance(pos, str) or not TIRE_POS.match(pos):
            raise ItemError(f"{field}.pos", "must be axle + L/R (+ O/I), e.g. 1L or 2RO")
        try:
            reading = TireReading(
                pos,
                _opt_number(tire, "kpa", *TIRE_KPA),
                _opt_number(tire, "temp_c", *TIRE_TEMP_C),
                _opt_number(tire, "sensor_battery_pct", *TIRE_BATTERY_PCT),
            )
        except ItemError as exc:  # name the full path, e.g. tires[2].kpa
            raise ItemError(f"{field}.{exc.field}", exc.problem) from None
        out.append(reading)
    return tuple(out)


def _telemetry(obj: dict[str, Any], now: datetime) -> Telemetry:
    seq = _seq(obj)
    ts = _ts(obj, now)
    lat, lon, speed = _position(obj)
    ignition = obj.get("ignition")
    if ignition is not None and not isinstance(ignition, bool):
        raise ItemError("ignition", "must be true or false")
    tires = _tires(obj)
    return Telemetry(
        seq,
        ts,
        lat,
        lon,
        speed,
        _opt_number(obj, "heading_deg", 0.0, MAX_HEADING_DEG),
        _opt_str(obj, "driver_id"),
        ignition,
        _opt_number(obj, "odometer_km", 0.0, MAX_ODOMETER_KM),
        tires,
        _extra(obj, _TELEMETRY_KEYS),
    )


def _event(obj: dict[str, Any], now: datetime) -> DeviceEvent:
    seq = _seq(obj)
    ts = _ts(obj, now)
    kind = obj.get("kind")
    if kind is None:
        raise ItemError("kind", "required")
    if not isinstance(kind, str) or kind not in EVENT_KINDS:  # a dict is not hashable
        raise ItemError("kind", f"unknown event kind {_show(kind)}")
    level = obj.get("level")
    if level is not None and (type(level) is not int or level not in (1, 2)):
        raise ItemError("level", "must be 1 or 2")
    lat, lon, speed = _position(obj)
    attrs = obj.get("attrs")
    if attrs is not None:
        if not isinstance(attrs, dict):
            raise ItemError("attrs", "must be an object")
        _check_json_blob("attrs", attrs)
    return DeviceEvent(
        seq,
        ts,
        kind,
        level,
        lat,
        lon,
        speed,
        _opt_str(obj, "driver_id"),
        attrs,
        _extra(obj, _EVENT_KEYS),
    )
