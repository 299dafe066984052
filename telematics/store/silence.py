"""The unit_silent alarm in PostgreSQL: a thin shell over ``telematics.silence``.

``note_heard`` records reconnects (the batch writer records items) on the vehicles'
``ingest_cursor.heard_at``. ``raise_and_clear`` is the alarm timer's turn: in one
transaction, under an advisory lock so that the timers of several workers take turns
instead of both opening the same alarm, it reads the units that may have gone silent and
the open unit_silent alarms, asks ``plan_silence`` and writes its alarms with their
lifecycle rows through ``store.alarms.write_lifecycle``, as the batch writer does (one
call for the alarms, tasks, audit and insurer outbox; the clears each under its row lock
as for any alarm).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from telematics.classify.risk_policy import RiskPolicy
from telematics.intervene.escalation import InterventionPolicy
from telematics.intervene.lifecycle import AlarmState
from telematics.silence import KEY, SilencePlan, UnitContact, plan_silence
from telematics.store import alarms as alarm_store

_LOCK = "telematics.unit_silent"

_CONTACT_COLS = """c.vehicle_id, v.vehicle_class, c.heard_at, c.last_seq, c.fix_ts, c.lat,
    c.lon, c.speed_kmh"""


async def note_heard(conn: asyncpg.Connection, heard: Mapping[str, datetime]) -> None:
    """Units heard from (reconnected) at these times; an earlier note never wins.

    The rows are locked in id order, as the batch writer locks them: in any other order
    the two could deadlock, and PostgreSQL would abort one of them."""
    if not heard:
        return
    await conn.execute(
        """WITH u AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS u(vehicle_id, at)),
                locked AS (SELECT c.vehicle_id FROM ingest_cursor c JOIN u USING (vehicle_id)
                           ORDER BY c.vehicle_id FOR UPDATE OF c)
           UPDATE ingest_cursor c SET heard_at = greatest(c.heard_at, u.at)
           FROM u JOIN locked USING (vehicle_id)
           WHERE c.vehicle_id = u.vehicle_id""",
        list(heard),
        list(heard.values()),
    )


async def raise_and_clear(
    conn: asyncpg.Connection,
    now: datetime,
    up_since: datetime,
    *,
    policy: RiskPolicy,
    escalation: InterventionPolicy,
    find_silent: bool = True,
) -> SilencePlan:
    """Open the unit_silent alarms due by ``now`` and clear those whose unit was heard
    again; ``find_silent`` False: only the clears (the cheap half, every timer tick)."""
    s = policy.silence
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _LOCK)
        contacts = await _open_alarm_contacts(conn)
        if find_silent:
            taken = {c.vehicle_id for c in contacts}
            rows = await conn.fetch(
                f"""SELECT {_CONTACT_COLS},
                           (SELECT max(a.first_ts) FROM alarms a
                            WHERE a.vehicle_id = c.vehicle_id AND a.key = $4) AS last_opened
                    FROM ingest_cursor c JOIN vehicles v ON v.id = c.vehicle_id
                    WHERE c.heard_at >= $1 AND c.heard_at <= $2 AND c.speed_kmh >= $3""",
                up_since,
                now - timedelta(seconds=s.silent_after_s),
                s.moving_kmh,
                KEY,
            )
            contacts += [
                _contact(r, last_opened=r["last_opened"])
                for r in rows
                if r["vehicle_id"] not in taken
            ]
        plan = plan_silence(contacts, now, up_since, policy, escalation)
        await alarm_store.write_lifecycle(
            conn,
            plan.lifecycle,
            now=now,
            policy=escalation,
            along_with={
                "alarms": _alarm_rows(plan),
                "news": alarm_store.news_rows(
                    {"id": a.id, "vehicle_id": a.vehicle_id, "severity": a.severity, "new": True}
                    for a in (o.alarm for o in plan.opened)
                ),
            },
        )
    return plan


async def _open_alarm_contacts(conn: asyncpg.Connection) -> list[UnitContact]:
    """The open unit_silent alarms, each with its unit's contact (are they heard again?)."""
    rows = await conn.fetch(
        f"""SELECT {alarm_store.ALARM_COLS}, {_CONTACT_COLS}
            FROM alarms a
            JOIN ingest_cursor c ON c.vehicle_id = a.vehicle_id
            JOIN vehicles v ON v.id = a.vehicle_id
            WHERE a.active AND a.key = $1""",
        KEY,
    )
    out = []
    for r in rows:
        alarm = AlarmState(**{k: r[k] for k in AlarmState.__dataclass_fields__})
        out.append(_contact(r, open_alarm=alarm, last_opened=alarm.opened_at))
    return out


def _contact(
    r: asyncpg.Record, *, open_alarm: AlarmState | None = None, last_opened: datetime | None
) -> UnitContact:
    return UnitContact(
        r["vehicle_id"],
        r["vehicle_class"],
        r["heard_at"],
        int(r["last_seq"]),
        r["fix_ts"],
        r["lat"],
        r["lon"],
        r["speed_kmh"],
        open_alarm,
        last_opened,
    )


def _alarm_rows(plan: SilencePlan) -> list[dict[str, Any]]:
    """The new alarms' rows, by column, for ``store.alarms.apply_alarm_rows``."""
    rows = []
    for o in plan.opened:
        a = o.alarm
        rows.append(
            {
                "id": a.id,
                "vehicle_id": a.vehicle_id,
                "kind": a.kind,
                "key": a.key,
                "severity": a.severity,
                "reason": a.reason,
                "derived": a.derived,
                "level": None,
                "tire_pos": None,
                "first_seq": o.seq,
                "first_ts": a.opened_at,
                "last_seq": o.seq,
                "last_ts": a.last_seen_at,
                "occurrences": 1,
                "lat": o.lat,
                "lon": o.lon,
                "speed_kmh": o.speed_kmh,
                "rules_version": o.rules_version,
                "late": False,
                "probability": None,  # graded by the rules: no model knows this kind
                "model_version": None,
                "factors": None,
            }
        )
    return rows
