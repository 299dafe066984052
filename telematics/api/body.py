"""Request bodies and query strings: parsed strictly, refused with a message naming the field."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from telematics.api.errors import ApiError

MAX_BODY_BYTES = 1 << 20  # a zone with a long corridor fits; anything larger is a mistake
MAX_DEPTH = 32  # a GeoJSON MultiPolygon Feature needs 6; deeper is a mistake or an attack


async def json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"body: larger than {MAX_BODY_BYTES // 1024} KiB")
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "bad_json", f"body: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "body: must be a JSON object")
    _check_tree(body)
    return body


def _check_tree(body: dict[str, Any]) -> None:
    """Refuse, before any handler looks, what none can use: nesting deeper than MAX_DEPTH
    (recursive code and ``repr`` in error messages hit Python's recursion limit: a 500)
    and NUL in any string or key (PostgreSQL's text and jsonb cannot hold it)."""
    stack: list[tuple[Any, str, int]] = [(body, "", 1)]  # value, its field, its depth
    while stack:  # a loop, not recursion: the depth is what is being checked
        value, field, depth = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(422, "invalid_field", f"{field or 'body'}: contains a NUL character")
        if isinstance(value, (dict, list)) and depth > MAX_DEPTH:
            raise ApiError(400, "bad_json", f"body: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            stack.extend((item, field, depth + 1) for item in value)
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{field}.{key}" if field else key
                if "\x00" in key:
                    raise ApiError(422, "invalid_field", f"{name}: contains a NUL character")
                stack.append((item, name, depth + 1))


def optional_str(body: dict[str, Any], name: str, max_len: int = 2000) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise ApiError(422, "invalid_field", f"{name}: must be a string of at most {max_len}")
    return value


def required_str(body: dict[str, Any], name: str, max_len: int = 2000) -> str:
    value = optional_str(body, name, max_len)
    if value is None or not value.strip():
        raise ApiError(422, "invalid_field", f"{name}: required, a non-empty string")
    return value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in choices:
        raise ApiError(422, "invalid_field", f"{name}: must be one of {', '.join(choices)}")
    return value


def query_bool(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(422, "invalid_field", f"{name}: must be true or false")
    return value in ("true", "1")


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "invalid_field", f"{name}: must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(422, "invalid_field", f"{name}: must be between {lo} and {hi}")
    return value
