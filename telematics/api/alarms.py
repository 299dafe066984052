"""``/api/v1/alarms``: the dispatcher's queue and the alarm lifecycle, per operator fleets.

Every action is one store call in one transaction and lands in the alarm's audit trail
with the operator's id as the actor; acknowledging stops the escalation chain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from telematics.api.auth import operator_of
from telematics.api.body import (
    json_object,
    optional_str,
    query_bool,
    query_choice,
    query_int,
    required_str,
)
from telematics.api.errors import not_found
from telematics.api.keys import CLOCK, DB, ESCALATION
from telematics.intervene.escalation import InterventionPolicy
from telematics.intervene.lifecycle import AlarmState, to_plain_dict
from telematics.protocol.messages import SEVERITIES
from telematics.store import alarms as alarm_store
from telematics.store import fleetview
from telematics.store.operators import Operator


def alarm_json(alarm: AlarmState) -> dict[str, Any]:
    return {**alarm.to_dict(), "status": alarm.status, "needs_attention": alarm.needs_attention}


_ACK_STATES = ("acknowledged", "unacknowledged")


async def list_alarms(request: web.Request) -> web.Response:
    """Open alarms, most severe first, then oldest, each with its task (deadline,
    escalation) and interventions (delivery status); filters: severity, min_severity,
    kind, vehicle, fleet, ack (acknowledged / unacknowledged), include_cleared_unacked,
    limit."""
    operator = operator_of(request)
    fleets = operator.fleet_filter()
    fleet = request.query.get("fleet")
    if fleet is not None:
        fleets = [fleet] if operator.sees_fleet(fleet) else []
    ack = query_choice(request, "ack", _ACK_STATES)
    async with request.app[DB].acquire() as conn:
        alarms = await alarm_store.open_alarms(
            conn,
            fleets,
            query_choice(request, "severity", SEVERITIES),
            vehicle_id=request.query.get("vehicle"),
            min_severity=query_choice(request, "min_severity", SEVERITIES),
            include_cleared_unacked=query_bool(request, "include_cleared_unacked"),
            kind=request.query.get("kind"),
            acknowledged=None if ack is None else ack == "acknowledged",
            limit=query_int(request, "limit", 100, 1, 1000),
        )
        rows = await queue_rows(conn, alarms)
    return web.json_response({"alarms": rows})


async def queue_rows(conn: asyncpg.Connection, alarms: list[AlarmState]) -> list[dict[str, Any]]:
    """Alarms as the queue shows them: with their task and interventions."""
    ids = [a.id for a in alarms]
    tasks = await fleetview.tasks_of(conn, ids)
    interventions = await fleetview.interventions_of(conn, ids)
    return [
        {**alarm_json(a), "task": tasks.get(a.id), "interventions": interventions.get(a.id, [])}
        for a in alarms
    ]


async def _in_scope(conn: asyncpg.Connection, operator: Operator, alarm_id: str) -> None:
    fleet = await alarm_store.fleet_of_alarm(conn, alarm_id)
    if fleet is None or not operator.sees_fleet(fleet):
        raise not_found("alarm")


async def _detail(conn: asyncpg.Connection, alarm_id: str) -> dict[str, Any]:
    d = await alarm_store.alarm_with_audit(conn, alarm_id)
    interventions = await fleetview.interventions_of(conn, [alarm_id])
    return {
        "alarm": alarm_json(d.alarm),
        "interventions": interventions.get(alarm_id, []),
        "audit": [e.to_dict() for e in d.audit],
        "task": None if d.task is None else d.task.to_dict(),
        "escalations": [{**to_plain_dict(e), "late": e.late} for e in d.escalations],
    }


async def get_alarm(request: web.Request) -> web.Response:
    alarm_id = request.match_info["alarm_id"]
    async with request.app[DB].acquire() as conn:
        await _in_scope(conn, operator_of(request), alarm_id)
        return web.json_response(await _detail(conn, alarm_id))


@dataclass(frozen=True, slots=True)
class AlarmAction:
    """One operator's request to act on one alarm, inside its transaction."""

    conn: asyncpg.Connection
    alarm_id: str
    actor: str  # the operator's id, as the audit trail records it
    now: datetime
    body: dict[str, Any]
    policy: InterventionPolicy


def _action(
    run: Callable[[AlarmAction], Awaitable[object]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A POST handler: scope check, the action as the operator, the alarm as it is now."""

    async def handler(request: web.Request) -> web.Response:
        operator = operator_of(request)
        alarm_id = request.match_info["alarm_id"]
        body = await json_object(request)
        now = request.app[CLOCK]()
        async with request.app[DB].acquire() as conn:
            await _in_scope(conn, operator, alarm_id)
            await run(AlarmAction(conn, alarm_id, operator.id, now, body, request.app[ESCALATION]))
            return web.json_response(await _detail(conn, alarm_id))

    return handler


async def _acknowledge(a: AlarmAction) -> object:
    return await alarm_store.acknowledge_alarm(
        a.conn, a.alarm_id, a.actor, now=a.now, policy=a.policy
    )


async def _assign(a: AlarmAction) -> object:
    assignee = optional_str(a.body, "assignee", 200)
    return await alarm_store.assign_alarm(a.conn, a.alarm_id, a.actor, assignee, now=a.now)


async def _comment(a: AlarmAction) -> object:
    text = required_str(a.body, "text")
    return await alarm_store.comment_alarm(a.conn, a.alarm_id, a.actor, text, now=a.now)


async def _clear(a: AlarmAction) -> object:
    reason = optional_str(a.body, "reason", 200) or "manual"
    return await alarm_store.clear_alarm(
        a.conn, a.alarm_id, a.actor, reason, now=a.now, policy=a.policy
    )


acknowledge = _action(_acknowledge)
assign = _action(_assign)
comment = _action(_comment)
clear = _action(_clear)
