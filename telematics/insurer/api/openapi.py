"""The OpenAPI 3 document of the insurers' API, served at ``/api/v1/insurer/openapi.json``
and checked against the live application by tests/insurer/test_openapi.py."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from telematics.insurer.api.common import json_response
from telematics.insurer.model import EVENT_TYPES
from telematics.protocol.messages import SEVERITIES

JSON = "application/json"
_ERR = {"$ref": "#/components/responses/Error"}
_OBJ: dict[str, Any] = {"type": "object"}


def _q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _p(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    }


def _op(
    summary: str,
    ok: int = 200,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    content: str = JSON,
    extra: tuple[int, ...] = (),
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(ok): {
            "description": "OK",
            "content": {content: {"schema": _OBJ if content == JSON else {"type": "string"}}},
        },
        "401": _ERR,
        "403": _ERR,
        "404": _ERR,
        "422": _ERR,
    }
    for status in extra:
        responses[str(status)] = (
            {"description": "OK", "content": {JSON: {"schema": _OBJ}}} if status < 400 else _ERR
        )
    op: dict[str, Any] = {"summary": summary, "parameters": params or [], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
        responses["400"] = _ERR
        responses["413"] = _ERR
    return op


_TIME = {"type": "string", "format": "date-time"}
_WINDOW = _q("window_days", {"type": "integer", "enum": [7, 30, 90]}, "rolling window, days")
_LIMIT = _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000})

CLAIM_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["vehicle_id", "occurred_at", "description"],
    "properties": {
        "vehicle_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "occurred_at": _TIME,
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "place": {"type": "string", "maxLength": 500},
        "description": {"type": "string", "minLength": 1, "maxLength": 5000},
        "reference": {"type": "string", "maxLength": 200},
    },
}
OUTCOME_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["outcome"],
    "properties": {
        "outcome": {"type": "string", "enum": ["paid", "partially_paid", "denied", "withdrawn"]},
        "at_fault": {"type": ["boolean", "null"]},
        "loss_amount": {"type": ["number", "null"], "minimum": 0},
        "currency": {"type": ["string", "null"], "pattern": "^[A-Z]{3}$"},
        "injuries": {"type": ["boolean", "null"]},
    },
}
ENDPOINT_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["url", "event_types"],
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "event_types": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "enum": list(EVENT_TYPES)},
        },
        "description": {"type": "string", "maxLength": 500},
    },
}
_ID = _p("endpoint_id")
_BASE = "/api/v1/insurer"

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "telematics insurers' API",
        "version": "1",
        "description": "See docs/insurer-api.md. Data outside the caller's active policies "
        "and consents answers 404, exactly like data that does not exist.",
    },
    "servers": [{"url": "/"}],
    "security": [{"apiKey": []}],
    "components": {
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Error": {
                "description": "An error with a stable code",
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "required": ["error"],
                            "properties": {
                                "error": {
                                    "type": "object",
                                    "required": ["code", "message"],
                                    "properties": {
                                        "code": {"type": "string"},
                                        "message": {"type": "string"},
                                    },
                                }
                            },
                        }
                    }
                },
            }
        },
    },
    "paths": {
        f"{_BASE}/vehicles": {"get": _op("Vehicles covered now, with consents")},
        f"{_BASE}/feed": {
            "get": _op(
                "Alarms and their later updates after a cursor",
                params=[
                    _q("cursor", {"type": "string", "maxLength": 200}),
                    _LIMIT,
                    _q("severity", {"type": "string", "enum": list(SEVERITIES)}),
                    _q("kind", {"type": "string", "maxLength": 64}),
                    _q("since", _TIME, "alarms opened at or after"),
                    _q("until", _TIME, "alarms opened before"),
                ],
            )
        },
        f"{_BASE}/scores/vehicles": {"get": _op("Risk score of each vehicle", params=[_WINDOW])},
        f"{_BASE}/scores/vehicles/{{vehicle_id}}": {
            "get": _op("Risk score of one vehicle", params=[_p("vehicle_id"), _WINDOW])
        },
        f"{_BASE}/scores/drivers": {"get": _op("Risk score of each driver", params=[_WINDOW])},
        f"{_BASE}/scores/drivers/{{driver_id}}": {
            "get": _op("Risk score of one driver", params=[_p("driver_id"), _WINDOW])
        },
        f"{_BASE}/reports/loss-control": {
            "get": _op(
                "Loss-control report of a fleet and month (format=csv for CSV)",
                params=[
                    {
                        "name": "fleet",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                    },
                    {
                        "name": "month",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                    },
                    _q("format", {"type": "string", "enum": ["json"]}),
                ],
            )
        },
        f"{_BASE}/claims": {
            "get": _op("Claims of the caller", params=[_LIMIT]),
            "post": _op(
                "First notice of loss; builds the evidence packet",
                ok=201,
                params=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                body=CLAIM_BODY,
                extra=(200,),
            ),
        },
        f"{_BASE}/claims/{{claim_id}}": {"get": _op("A claim", params=[_p("claim_id")])},
        f"{_BASE}/claims/{{claim_id}}/evidence": {
            "get": _op("The evidence packet (JSON)", params=[_p("claim_id")])
        },
        f"{_BASE}/claims/{{claim_id}}/evidence.zip": {
            "get": _op(
                "The evidence packet as one zip archive",
                params=[_p("claim_id")],
                content="application/zip",
            )
        },
        f"{_BASE}/claims/{{claim_id}}/outcome": {
            "post": _op("Record the claim's outcome", params=[_p("claim_id")], body=OUTCOME_BODY)
        },
        f"{_BASE}/webhooks": {
            "get": _op("Webhook endpoints"),
            "post": _op("Register an endpoint; returns its secret once", 201, body=ENDPOINT_BODY),
        },
        f"{_BASE}/webhooks/{{endpoint_id}}": {
            "get": _op("An endpoint", params=[_ID]),
            "delete": _op("Disable an endpoint", params=[_ID]),
        },
        f"{_BASE}/webhooks/{{endpoint_id}}/enable": {
            "post": _op("Enable an endpoint again (after a 410)", params=[_ID])
        },
        f"{_BASE}/webhooks/{{endpoint_id}}/rotate-secret": {
            "post": _op(
                "New secret; the old one keeps signing for keep_previous_s",
                params=[_ID],
                body={
                    "type": "object",
                    "properties": {
                        "keep_previous_s": {"type": "integer", "minimum": 0, "maximum": 604800}
                    },
                },
            )
        },
        f"{_BASE}/webhooks/{{endpoint_id}}/deliveries": {
            "get": _op(
                "Delivery log of an endpoint",
                params=[
                    _ID,
                    _q(
                        "status",
                        {"type": "string", "enum": ["pending", "delivered", "failed", "disabled"]},
                    ),
                    _LIMIT,
                ],
            )
        },
        f"{_BASE}/webhooks/{{endpoint_id}}/deliveries/{{delivery_id}}/redeliver": {
            "post": _op("Send a message again", 202, params=[_ID, _p("delivery_id")])
        },
    },
}


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(DOCUMENT)
