"""Alarm lifecycle and dispatcher tasks in PostgreSQL: thin functions over the pure rules.

Each public function is one transaction (a savepoint inside a caller's transaction) that
locks the rows it changes, applies the pure function of ``intervene.lifecycle`` /
``intervene.escalation`` and writes the new state together with its audit rows.

Lock order, everywhere: the alarm row, then its task row; both ``FOR NO KEY UPDATE`` so
that inserting rows that reference them (audit, escalations) never waits on a lock held
by a dispatcher. Concurrent dispatchers on one alarm are serialised; timers of several
workers share the due tasks with ``SKIP LOCKED``.

Every change of an alarm's state is announced with ``NOTIFY telematics_alarms`` (JSON:
id, vehicle_id, key, severity, active, acknowledged, assignee) at commit, so ingest
processors can forget an alarm a dispatcher cleared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from telematics.classify.alarms import SEVERITY_RANK
from telematics.intervene import escalation as esc
from telematics.intervene import lifecycle as lc
from telematics.intervene.escalation import (
    ClearRequest,
    DispatchTask,
    EscalationStep,
    InterventionPolicy,
    LifecycleWrites,
    UpgradeTask,
    close_task,
    fire_due,
    load_policy,
    new_task,
    next_escalation_at,
    upgrade_task,
)
from telematics.intervene.lifecycle import AlarmError, AlarmState, AuditEntry, Transition

CHANNEL = "telematics_alarms"
#: New alarms and severity rises (announced by the batch writer at commit: id,
#: vehicle_id, severity, new) and escalation steps (id, vehicle_id, escalation, target),
#: for live views; lifecycle changes go on ``CHANNEL``.
RAISED_CHANNEL = "telematics_alarms_raised"  # named in sql/018's apply_alarm_rows too


def news_rows(news: Iterable[dict[str, Any]]) -> list[str]:
    """``news`` as the texts :func:`apply_alarm_rows` puts on ``RAISED_CHANNEL``."""
    return [_json(n) for n in news]


async def announce_raised(conn: asyncpg.Connection, news: Sequence[dict[str, Any]]) -> None:
    """Put ``news`` on ``RAISED_CHANNEL``, delivered when the transaction commits; one
    statement for all of them, none for none."""
    await apply_alarm_rows(conn, {"news": news_rows(news)})


_ALARM_COLS = """a.id, a.vehicle_id, a.key, a.kind, a.severity, a.first_ts AS opened_at,
    a.last_ts AS last_seen_at, a.reason, a.derived, a.tire_pos, a.occurrences, a.active,
    a.acknowledged, a.assignee, a.cleared_at, a.cleared_by, a.clear_reason, a.acked_at,
    a.acked_by, a.state_changed_at, a.probability, a.model_version, a.factors"""
ALARM_COLS = _ALARM_COLS  # for readers that join the alarm to more (store/silence.py)
_TASK_COLS = """t.id, t.alarm_id, t.vehicle_id, t.severity, t.created_at, t.due_at,
    t.chain_started_at, t.escalation_level, t.next_escalation_at, t.status,
    t.acknowledged_at, t.acknowledged_by, t.closed_at, t.policy_version"""


class UnknownAlarm(AlarmError):
    """No alarm (or task) with that id."""


@dataclass(frozen=True, slots=True)
class AlarmDetail:
    alarm: AlarmState
    audit: list[AuditEntry]
    task: DispatchTask | None
    escalations: list[EscalationStep]


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now


def _alarm(row: asyncpg.Record) -> AlarmState:
    return AlarmState(**dict(row))


def _task(row: asyncpg.Record) -> DispatchTask:
    return DispatchTask(**dict(row))


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


# -- rows --------------------------------------------------------------------------------


async def _lock_alarms(conn: asyncpg.Connection, ids: Iterable[str]) -> dict[str, AlarmState]:
    rows = await conn.fetch(
        f"""SELECT {_ALARM_COLS} FROM alarms a WHERE a.id = ANY($1::text[])
            ORDER BY a.id FOR NO KEY UPDATE""",
        sorted(set(ids)),
    )
    return {r["id"]: _alarm(r) for r in rows}


async def _lock_alarm(conn: asyncpg.Connection, alarm_id: str) -> AlarmState:
    found = await _lock_alarms(conn, [alarm_id])
    if alarm_id not in found:
        raise UnknownAlarm(f"no alarm {alarm_id!r}")
    return found[alarm_id]


async def _lock_tasks_of(
    conn: asyncpg.Connection, alarm_ids: Iterable[str]
) -> dict[str, DispatchTask]:
    """Alarm id → its task, locked (take the alarms' locks first)."""
    rows = await conn.fetch(
        f"""SELECT {_TASK_COLS} FROM dispatch_tasks t WHERE t.alarm_id = ANY($1::text[])
            ORDER BY t.alarm_id FOR NO KEY UPDATE""",
        sorted(set(alarm_ids)),
    )
    return {r["alarm_id"]: _task(r) for r in rows}


async def _save_alarms(conn: asyncpg.Connection, states: Sequence[AlarmState]) -> None:
    """Write the lifecycle columns (severity and counters belong to the ingest writer)."""
    if not states:
        return
    await conn.execute(
        """UPDATE alarms a SET active = u.active, acknowledged = u.acknowledged,
                  assignee = u.assignee, cleared_at = u.cleared_at, cleared_by = u.cleared_by,
                  clear_reason = u.clear_reason, acked_at = u.acked_at, acked_by = u.acked_by,
                  state_changed_at = coalesce(u.state_changed_at, a.state_changed_at)
           FROM unnest($1::text[], $2::boolean[], $3::boolean[], $4::text[], $5::timestamptz[],
                       $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::timestamptz[])
                AS u(id, active, acknowledged, assignee, cleared_at, cleared_by, clear_reason,
                     acked_at, acked_by, state_changed_at)
           WHERE a.id = u.id""",
        [s.id for s in states],
        [s.active for s in states],
        [s.acknowledged for s in states],
        [s.assignee for s in states],
        [s.cleared_at for s in states],
        [s.cleared_by for s in states],
        [s.clear_reason for s in states],
        [s.acked_at for s in states],
        [s.acked_by for s in states],
        [s.state_changed_at for s in states],
    )
    await conn.execute(
        "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n",
        CHANNEL,
        [
            _json(
                {
                    "id": s.id,
                    "vehicle_id": s.vehicle_id,
                    "key": s.key,
                    "severity": s.severity,
                    "active": s.active,
                    "acknowledged": s.acknowledged,
                    "assignee": s.assignee,
                }
            )
            for s in states
        ],
    )


async def apply_alarm_rows(conn: asyncpg.Connection, doc: dict[str, list[Any]]) -> None:
    """Write alarm rows of several kinds in one round trip (``apply_alarm_rows`` in
    sql/018: its comment lists the keys and what each statement skips); empty keys are
    left out, and nothing at all is sent for none."""
    present = {key: rows for key, rows in doc.items() if rows}
    if present:
        await conn.execute(
            "SELECT apply_alarm_rows($1::jsonb)",
            orjson.dumps(present, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        )


def audit_rows(entries: Iterable[AuditEntry]) -> list[dict[str, Any]]:
    """Audit rows of existing alarms; an alarm's 'opened' row is written once."""
    return [
        {"alarm_id": e.alarm_id, "at": e.at, "actor": e.actor, "action": e.action,
         "detail": dict(e.detail)}
        for e in entries
    ]  # fmt: skip


_TASK_FIELDS = (
    "id",
    "alarm_id",
    "vehicle_id",
    "severity",
    "created_at",
    "due_at",
    "chain_started_at",
    "escalation_level",
    "next_escalation_at",
    "status",
    "acknowledged_at",
    "acknowledged_by",
    "closed_at",
    "policy_version",
)


def task_rows(tasks: Iterable[DispatchTask]) -> list[dict[str, Any]]:
    """New tasks of existing alarms; an alarm that already has one keeps it."""
    return [{f: getattr(t, f) for f in _TASK_FIELDS} for t in tasks]


def lifecycle_rows(writes: LifecycleWrites) -> dict[str, list[Any]]:
    """The rows of ``writes`` that need no lock (audit, new tasks, insurer notices), for
    :func:`apply_alarm_rows`."""
    return {
        "audit": audit_rows(writes.audit),
        "tasks": task_rows(writes.tasks),
        "insurer": [
            {"alarm_id": n.alarm_id, "kind": n.kind, "created_at": n.created_at,
             "payload": dict(n.payload)}
            for n in writes.insurer
        ],
    }  # fmt: skip


async def _insert_audit(conn: asyncpg.Connection, entries: Sequence[AuditEntry]) -> None:
    await apply_alarm_rows(conn, {"audit": audit_rows(entries)})


async def _insert_tasks(conn: asyncpg.Connection, tasks: Sequence[DispatchTask]) -> None:
    await apply_alarm_rows(conn, {"tasks": task_rows(tasks)})


async def _save_tasks(conn: asyncpg.Connection, tasks: Sequence[DispatchTask]) -> None:
    if not tasks:
        return
    await conn.execute(
        """UPDATE dispatch_tasks t SET severity = u.severity, due_at = u.due_at,
                  chain_started_at = u.chain_started_at, escalation_level = u.level,
                  next_escalation_at = u.next_at, status = u.status,
                  acknowledged_at = u.acked_at, acknowledged_by = u.acked_by,
                  closed_at = u.closed_at, policy_version = u.policy_version, updated_at = now()
           FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[],
                       $6::timestamptz[], $7::text[], $8::timestamptz[], $9::text[],
                       $10::timestamptz[], $11::text[])
                AS u(id, severity, due_at, chain_started_at, level, next_at, status, acked_at,
                     acked_by, closed_at, policy_version)
           WHERE t.id = u.id""",
        [t.id for t in tasks],
        [t.severity for t in tasks],
        [t.due_at for t in tasks],
        [t.chain_started_at for t in tasks],
        [t.escalation_level for t in tasks],
        [t.next_escalation_at for t in tasks],
        [t.status for t in tasks],
        [t.acknowledged_at for t in tasks],
        [t.acknowledged_by for t in tasks],
        [t.closed_at for t in tasks],
        [t.policy_version for t in tasks],
    )


async def _insert_escalations(
    conn: asyncpg.Connection, steps: Sequence[EscalationStep]
) -> set[tuple[str, str, int]]:
    """Record fired steps; returns the (task, severity, level) actually new."""
    if not steps:
        return set()
    rows = await conn.fetch(
        """INSERT INTO escalations (task_id, alarm_id, severity, level, target, due_at, at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
                                $6::timestamptz[], $7::timestamptz[])
           ON CONFLICT (task_id, severity, level) DO NOTHING
           RETURNING task_id, severity, level""",
        [s.task_id for s in steps],
        [s.alarm_id for s in steps],
        [s.severity for s in steps],
        [s.level for s in steps],
        [s.target for s in steps],
        [s.due_at for s in steps],
        [s.fired_at for s in steps],
    )
    return {(r["task_id"], r["severity"], r["level"]) for r in rows}


async def _apply(conn: asyncpg.Connection, before: AlarmState, t: Transition) -> AlarmState:
    if t.state != before:
        await _save_alarms(conn, [t.state])
    await _insert_audit(conn, t.audit)
    return t.state


# -- dispatcher actions ------------------------------------------------------------------


async def acknowledge_alarm(
    conn: asyncpg.Connection,
    alarm_id: str,
    actor: str,
    *,
    now: datetime | None = None,
    policy: InterventionPolicy | None = None,
) -> AlarmState:
    """Acknowledge the alarm and its dispatcher task (which stops the escalation)."""
    at, policy = _now(now), policy or load_policy()
    async with conn.transaction():
        state = await _lock_alarm(conn, alarm_id)
        result = await _apply(conn, state, lc.acknowledge(state, actor, at))
        await _ack_tasks(conn, [alarm_id], actor.strip(), at, policy)
    return result


async def acknowledge_task(
    conn: asyncpg.Connection,
    task_id: str,
    actor: str,
    *,
    now: datetime | None = None,
    policy: InterventionPolicy | None = None,
) -> DispatchTask:
    """Acknowledge a dispatcher task, and so its alarm; the escalation chain stops."""
    at, policy = _now(now), policy or load_policy()
    async with conn.transaction():
        alarm_id = await conn.fetchval("SELECT alarm_id FROM dispatch_tasks WHERE id = $1", task_id)
        if alarm_id is None:
            raise UnknownAlarm(f"no task {task_id!r}")
        state = await _lock_alarm(conn, alarm_id)  # alarm first, then its task
        await _apply(conn, state, lc.acknowledge(state, actor, at))
        tasks = await _ack_tasks(conn, [alarm_id], actor.strip(), at, policy)
    return tasks[alarm_id]


async def _ack_tasks(
    conn: asyncpg.Connection,
    alarm_ids: list[str],
    actor: str,
    at: datetime,
    policy: InterventionPolicy,
) -> dict[str, DispatchTask]:
    tasks = await _lock_tasks_of(conn, alarm_ids)
    done = {a: esc.acknowledge_task(t, actor, at, policy) for a, t in tasks.items()}
    await _save_tasks(conn, [t for a, t in done.items() if t != tasks[a]])
    return done


async def assign_alarm(
    conn: asyncpg.Connection,
    alarm_id: str,
    actor: str,
    assignee: str | None,
    *,
    now: datetime | None = None,
) -> AlarmState:
    async with conn.transaction():
        state = await _lock_alarm(conn, alarm_id)
        return await _apply(conn, state, lc.assign(state, actor, assignee, _now(now)))


async def comment_alarm(
    conn: asyncpg.Connection,
    alarm_id: str,
    actor: str,
    text: str,
    *,
    now: datetime | None = None,
) -> AuditEntry:
    async with conn.transaction():
        state = await _lock_alarm(conn, alarm_id)
        t = lc.comment(state, actor, text, _now(now))
        await _apply(conn, state, t)
    return t.audit[0]


async def clear_alarm(
    conn: asyncpg.Connection,
    alarm_id: str,
    actor: str,
    reason: str = "manual",
    *,
    now: datetime | None = None,
    policy: InterventionPolicy | None = None,
) -> AlarmState:
    """Clear by hand; the alarm's task closes (no more escalation). Acknowledgement is apart."""
    at, policy = _now(now), policy or load_policy()
    async with conn.transaction():
        state = await _lock_alarm(conn, alarm_id)
        result = await _apply(conn, state, lc.clear(state, actor, reason, at))
        if not result.active:
            await _close_tasks(conn, [alarm_id], at, policy)
    return result


async def _close_tasks(
    conn: asyncpg.Connection, alarm_ids: list[str], at: datetime, policy: InterventionPolicy
) -> None:
    tasks = await _lock_tasks_of(conn, alarm_ids)
    closed = [close_task(t, at, policy) for t in tasks.values()]
    await _save_tasks(conn, [c for c, t in zip(closed, tasks.values(), strict=True) if c != t])


# -- reading ---------------------------------------------------------------------------


async def open_alarms(
    conn: asyncpg.Connection,
    fleet_ids: Sequence[str] | None = None,
    severity: str | None = None,
    *,
    vehicle_id: str | None = None,
    min_severity: str | None = None,
    include_cleared_unacked: bool = False,
    kind: str | None = None,
    acknowledged: bool | None = None,
    limit: int = 100,
) -> list[AlarmState]:
    """The dispatcher's list: open alarms, most severe first, then oldest first.

    ``include_cleared_unacked`` adds alarms that cleared before anyone acknowledged them.
    """
    where = ["(a.active OR NOT a.acknowledged)" if include_cleared_unacked else "a.active"]
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if fleet_ids is not None:
        fleets = arg(list(fleet_ids))
        where.append(f"a.vehicle_id IN (SELECT id FROM vehicles WHERE fleet_id = ANY({fleets}))")
    if severity is not None:
        where.append(f"a.severity = {arg(severity)}")
    if min_severity is not None:
        if min_severity not in SEVERITY_RANK:
            raise AlarmError(f"unknown severity {min_severity!r}")
        where.append(f"a.severity_rank >= {arg(SEVERITY_RANK[min_severity])}")
    if vehicle_id is not None:
        where.append(f"a.vehicle_id = {arg(vehicle_id)}")
    if kind is not None:
        where.append(f"a.kind = {arg(kind)}")
    if acknowledged is not None:
        where.append(f"a.acknowledged = {arg(acknowledged)}")
    rows = await conn.fetch(
        f"""SELECT {_ALARM_COLS} FROM alarms a WHERE {" AND ".join(where)}
            ORDER BY a.severity_rank DESC, a.first_ts, a.id LIMIT {arg(limit)}""",
        *args,
    )
    return [_alarm(r) for r in rows]


async def alarms_by_id(conn: asyncpg.Connection, ids: Sequence[str]) -> list[AlarmState]:
    rows = await conn.fetch(f"SELECT {_ALARM_COLS} FROM alarms a WHERE a.id = ANY($1)", list(ids))
    return [_alarm(r) for r in rows]


async def fleet_of_alarm(conn: asyncpg.Connection, alarm_id: str) -> str | None:
    """The fleet of the alarm's vehicle (to scope access); None if there is no such alarm."""
    fleet: str | None = await conn.fetchval(
        "SELECT v.fleet_id FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1",
        alarm_id,
    )
    return fleet


async def active_alarms_of(conn: asyncpg.Connection, vehicle_id: str) -> list[AlarmState]:
    """A vehicle's active alarms (one per key): re-seed its processor after a (re)start."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (a.key) {_ALARM_COLS} FROM alarms a
            WHERE a.vehicle_id = $1 AND a.active ORDER BY a.key, a.last_ts DESC""",
        vehicle_id,
    )
    return [_alarm(r) for r in rows]


async def alarm_with_audit(conn: asyncpg.Connection, alarm_id: str) -> AlarmDetail:
    row = await conn.fetchrow(f"SELECT {_ALARM_COLS} FROM alarms a WHERE a.id = $1", alarm_id)
    if row is None:
        raise UnknownAlarm(f"no alarm {alarm_id!r}")
    audit = await conn.fetch(
        """SELECT alarm_id, at, actor, action, detail FROM alarm_audit
           WHERE alarm_id = $1 ORDER BY id""",
        alarm_id,
    )
    task_row = await conn.fetchrow(
        f"SELECT {_TASK_COLS} FROM dispatch_tasks t WHERE t.alarm_id = $1", alarm_id
    )
    escalations = await conn.fetch(
        """SELECT e.task_id, e.alarm_id, t.vehicle_id, e.severity, e.level, e.target, e.due_at,
                  e.at AS fired_at
           FROM escalations e JOIN dispatch_tasks t ON t.id = e.task_id
           WHERE e.alarm_id = $1 ORDER BY e.id""",
        alarm_id,
    )
    return AlarmDetail(
        _alarm(row),
        [
            AuditEntry(r["alarm_id"], r["at"], r["actor"], r["action"], orjson.loads(r["detail"]))
            for r in audit
        ],
        None if task_row is None else _task(task_row),
        [EscalationStep(**dict(r)) for r in escalations],
    )


# -- the timer -------------------------------------------------------------------------


async def due_escalations(
    conn: asyncpg.Connection,
    now: datetime | None = None,
    *,
    policy: InterventionPolicy | None = None,
    limit: int = 100,
) -> list[EscalationStep]:
    """The steps due by ``now`` that have not fired yet (read only; see ``record_escalation``)."""
    at, policy = _now(now), policy or load_policy()
    rows = await conn.fetch(
        f"""SELECT {_TASK_COLS} FROM dispatch_tasks t
            WHERE t.status = 'open' AND t.next_escalation_at <= $1
            ORDER BY t.next_escalation_at LIMIT $2""",
        at,
        limit,
    )
    return [s for r in rows for s in fire_due(_task(r), at, policy)[1]]


async def record_escalation(
    conn: asyncpg.Connection,
    step: EscalationStep,
    *,
    policy: InterventionPolicy | None = None,
) -> bool:
    """Record that ``step`` fired; True only for the one caller that recorded it.

    Refused (False) when the step already fired, is not the task's next step any more,
    or the task was acknowledged, closed or upgraded meanwhile. Notify only on True.
    """
    policy = policy or load_policy()
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_TASK_COLS} FROM dispatch_tasks t WHERE t.id = $1 FOR NO KEY UPDATE",
            step.task_id,
        )
        if row is None:
            raise UnknownAlarm(f"no task {step.task_id!r}")
        task = _task(row)
        if task.severity != step.severity or task.escalation_level != step.level - 1:
            return False
        advanced, steps = fire_due(task, step.fired_at, policy)
        if not steps or steps[0].level != step.level:
            return False
        advanced = _with_level(advanced, step.level, policy)
        inserted = await _insert_escalations(conn, [step])
        if not inserted:
            return False
        await _save_tasks(conn, [advanced])
    return True


def _with_level(task: DispatchTask, level: int, policy: InterventionPolicy) -> DispatchTask:
    moved = replace(task, escalation_level=level)
    return replace(moved, next_escalation_at=next_escalation_at(moved, policy))


async def fire_due_escalations(
    conn: asyncpg.Connection,
    now: datetime | None = None,
    *,
    policy: InterventionPolicy | None = None,
    limit: int = 100,
) -> list[EscalationStep]:
    """Find, record and return every step due by ``now``, each exactly once.

    One transaction; tasks another worker is firing are skipped (``SKIP LOCKED``). Send
    the returned notifications after this returns: a step is recorded before anyone hears
    of it, so a crash in between loses a notification rather than doubling it, and the
    ``escalations`` row shows it on the dispatcher's screen either way.
    """
    at, policy = _now(now), policy or load_policy()
    async with conn.transaction():
        rows = await conn.fetch(
            f"""SELECT {_TASK_COLS} FROM dispatch_tasks t
                WHERE t.status = 'open' AND t.next_escalation_at <= $1
                ORDER BY t.next_escalation_at LIMIT $2
                FOR NO KEY UPDATE SKIP LOCKED""",
            at,
            limit,
        )
        advanced: list[DispatchTask] = []
        steps: list[EscalationStep] = []
        for r in rows:
            task, fired = fire_due(_task(r), at, policy)
            if fired:
                advanced.append(task)
                steps.extend(fired)
        inserted = await _insert_escalations(conn, steps)
        await _save_tasks(conn, advanced)
        fired = [s for s in steps if (s.task_id, s.severity, s.level) in inserted]
        # live views show the step (and the next one's timer) at once
        await announce_raised(
            conn,
            [
                {"id": s.alarm_id, "vehicle_id": s.vehicle_id, "escalation": s.level,
                 "target": s.target}
                for s in fired
            ],
        )  # fmt: skip
    return fired


async def auto_clear_alarms(
    conn: asyncpg.Connection,
    now: datetime | None = None,
    *,
    policy: InterventionPolicy | None = None,
    limit: int = 500,
) -> list[AlarmState]:
    """Clear every active alarm whose behaviour has been absent long enough; their tasks close.

    Condition alarms (derived tire conditions) and manual-only kinds are left alone.
    Returns the alarms cleared (as of the moment each lapsed).
    """
    at, policy = _now(now), policy or load_policy()
    clear = policy.auto_clear
    kinds = sorted(clear.absent_s)
    shortest = min([clear.default_absent_s, *clear.absent_s.values()])
    async with conn.transaction():
        rows = await conn.fetch(
            f"""SELECT {_ALARM_COLS} FROM alarms a
                LEFT JOIN unnest($2::text[], $3::float8[]) AS p(kind, s) ON p.kind = a.kind
                WHERE a.active AND a.last_ts <= $1::timestamptz - make_interval(secs => $4)
                  AND a.last_ts <= $1::timestamptz - make_interval(secs => coalesce(p.s, $5))
                  AND NOT (a.kind = ANY($6::text[]))
                  AND NOT (a.derived AND a.kind = ANY($7::text[]))
                ORDER BY a.last_ts LIMIT $8
                FOR NO KEY UPDATE OF a SKIP LOCKED""",
            at,
            kinds,
            [clear.absent_s[k] for k in kinds],
            shortest,
            clear.default_absent_s,
            sorted(clear.manual_kinds),
            sorted(clear.condition_kinds),
            limit,
        )
        cleared: list[AlarmState] = []
        audit: list[AuditEntry] = []
        for r in rows:
            t = lc.auto_clear_due(_alarm(r), at, clear)
            if t is not None:
                cleared.append(t.state)
                audit.extend(t.audit)
        await _save_alarms(conn, cleared)
        await _insert_audit(conn, audit)
        await _close_tasks(conn, [s.id for s in cleared], at, policy)
    return cleared


# -- with the ingest writer's transaction ---------------------------------------------------


async def write_lifecycle(
    conn: asyncpg.Connection,
    writes: LifecycleWrites,
    *,
    now: datetime | None = None,
    policy: InterventionPolicy | None = None,
    along_with: dict[str, list[Any]] | None = None,
) -> None:
    """Commit lifecycle rows inside the caller's transaction: those that need no lock in
    one :func:`apply_alarm_rows` call, together with ``along_with`` (the new alarms and
    other rows of the same flush, which that call writes first: the lifecycle rows
    reference them), then the upgrades and clears, re-derived under the alarms' row locks
    because a dispatcher may have changed an alarm meanwhile.

    Idempotent (a retried or replayed plan writes nothing twice) and never a data error:
    rows of alarms that are not in the table are skipped rather than refused.
    """
    await apply_alarm_rows(conn, {**(along_with or {}), **lifecycle_rows(writes)})
    if writes.upgrades or writes.clears:
        at, policy = _now(now), policy or load_policy()
        await _upgrade(conn, writes, at, policy)
        await _clear_requested(conn, writes.clears, at, policy)


async def _upgrade(
    conn: asyncpg.Connection, writes: LifecycleWrites, at: datetime, policy: InterventionPolicy
) -> None:
    if not writes.upgrades:
        return
    top: dict[str, UpgradeTask] = {}
    for u in writes.upgrades:
        prior = top.get(u.alarm_id)
        if prior is None or SEVERITY_RANK[u.severity] > SEVERITY_RANK[prior.severity]:
            top[u.alarm_id] = u
    alarms = await _lock_alarms(conn, top)
    # A rise voids an acknowledgement of the lesser risk (the dispatcher must look again).
    reset: list[AlarmState] = []
    audit: list[AuditEntry] = []
    for alarm_id, state in alarms.items():
        if state.acknowledged and state.active:
            u = top[alarm_id]
            reset.append(
                replace(
                    state, acknowledged=False, acked_at=None, acked_by=None, state_changed_at=u.at
                )
            )
            audit.append(
                AuditEntry(
                    alarm_id,
                    u.at,
                    lc.SYSTEM,
                    "unacknowledged",
                    {"reason": "severity_raised", "acked_by": state.acked_by},
                )
            )
    await _save_alarms(conn, reset)
    await _insert_audit(conn, audit)
    live = [a for a, s in alarms.items() if s.active]
    tasks = await _lock_tasks_of(conn, live)
    changed: list[DispatchTask] = []
    created: list[DispatchTask] = []
    for alarm_id in live:
        u = top[alarm_id]
        task = tasks.get(alarm_id)
        if task is None:
            fresh = new_task(alarm_id, u.vehicle_id, u.severity, u.at, policy, u.new_task_id)
            if fresh is not None:
                created.append(fresh)
            continue
        upgraded = upgrade_task(task, u.severity, u.at, policy)
        if upgraded != task:
            changed.append(upgraded)
    await _save_tasks(conn, changed)
    await _insert_tasks(conn, created)


async def _clear_requested(
    conn: asyncpg.Connection,
    requests: list[ClearRequest],
    at: datetime,
    policy: InterventionPolicy,
) -> None:
    if not requests:
        return
    first: dict[str, ClearRequest] = {}
    for c in sorted(requests, key=lambda c: c.at):
        first.setdefault(c.alarm_id, c)
    alarms = await _lock_alarms(conn, first)
    cleared: list[AlarmState] = []
    audit: list[AuditEntry] = []
    for alarm_id, state in alarms.items():
        c = first[alarm_id]
        t = lc.clear(state, c.actor, c.reason, c.at, c.detail)
        if t.audit:
            cleared.append(t.state)
            audit.extend(t.audit)
    await _save_alarms(conn, cleared)
    await _insert_audit(conn, audit)
    await _close_tasks(conn, [s.id for s in cleared], at, policy)
