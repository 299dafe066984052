-- Alarm lifecycle (active / cleared × unacknowledged / acknowledged), its audit trail,
-- dispatcher tasks with their escalation chain, and the insurer outbox.
-- The rules live in telematics/intervene/lifecycle.py and escalation.py (pure); the
-- functions of telematics/store/alarms.py apply them under row locks.

ALTER TABLE alarms
    ADD COLUMN active            boolean NOT NULL DEFAULT true,
    ADD COLUMN acknowledged      boolean NOT NULL DEFAULT false,
    ADD COLUMN assignee          text,
    ADD COLUMN cleared_at        timestamptz,
    ADD COLUMN cleared_by        text,
    ADD COLUMN clear_reason      text,
    ADD COLUMN acked_at          timestamptz,
    ADD COLUMN acked_by          text,
    ADD COLUMN state_changed_at  timestamptz NOT NULL DEFAULT now(),
    -- for "most severe first"; text order of the names must not matter
    ADD COLUMN severity_rank     smallint NOT NULL GENERATED ALWAYS AS (
        CASE severity WHEN 'general' THEN 0 WHEN 'moderate' THEN 1 ELSE 2 END) STORED,
    ADD CONSTRAINT alarms_cleared_when_inactive CHECK (active = (cleared_at IS NULL)),
    ADD CONSTRAINT alarms_acked_when_acknowledged CHECK (acknowledged = (acked_at IS NOT NULL));

-- The alarms that were already there: only the newest of each vehicle and behaviour stays
-- open (the others were superseded by the old cool-down grouping); the timer's auto-clear
-- closes the rest by the policy's absence rules.
UPDATE alarms a
SET active = false, cleared_at = a.last_ts, cleared_by = 'system', clear_reason = 'superseded',
    state_changed_at = a.last_ts
WHERE EXISTS (SELECT 1 FROM alarms b
              WHERE b.vehicle_id = a.vehicle_id AND b.key = a.key
                AND (b.first_ts, b.id) > (a.first_ts, a.id));

-- The dispatcher's list: open alarms, most severe first, then oldest first.
CREATE INDEX alarms_open_by_severity ON alarms (severity_rank DESC, first_ts) WHERE active;
-- Cleared but never acknowledged: still on the list (ThingsBoard's CLEARED_UNACK).
CREATE INDEX alarms_cleared_unacked ON alarms (severity_rank DESC, first_ts)
    WHERE NOT active AND NOT acknowledged;
-- The open alarm of a vehicle and behaviour (one at a time) and the auto-clear sweep.
CREATE INDEX alarms_open_vehicle_key ON alarms (vehicle_id, key) WHERE active;
CREATE INDEX alarms_open_last_ts ON alarms (last_ts) WHERE active;

-- Every change of an alarm, with who did it. Comments are audit rows ('commented').
CREATE TABLE alarm_audit (
    id        bigserial PRIMARY KEY,
    alarm_id  text NOT NULL REFERENCES alarms (id),
    at        timestamptz NOT NULL,
    actor     text NOT NULL,  -- a dispatcher's name, or 'system'
    action    text NOT NULL CHECK (action IN ('opened', 'severity_raised', 'acknowledged',
                                              'unacknowledged', 'assigned', 'unassigned',
                                              'commented', 'cleared')),
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_audit_alarm ON alarm_audit (alarm_id, id);
-- An alarm opens once, however often its plan is retried or replayed.
CREATE UNIQUE INDEX alarm_audit_opened_once ON alarm_audit (alarm_id) WHERE action = 'opened';

INSERT INTO alarm_audit (alarm_id, at, actor, action, detail)
SELECT id, first_ts, 'system', 'opened',
       jsonb_build_object('severity', severity, 'kind', kind, 'key', key, 'reason', reason)
FROM alarms;
INSERT INTO alarm_audit (alarm_id, at, actor, action, detail)
SELECT id, cleared_at, 'system', 'cleared', jsonb_build_object('reason', 'superseded')
FROM alarms WHERE NOT active;

-- A dispatcher's to-do for a moderate or severe alarm (one per alarm; a rise upgrades it).
CREATE TABLE dispatch_tasks (
    id                  text PRIMARY KEY,
    alarm_id            text NOT NULL UNIQUE REFERENCES alarms (id),
    vehicle_id          text NOT NULL REFERENCES vehicles (id),
    severity            text NOT NULL CHECK (severity IN ('general', 'moderate', 'severe')),
    created_at          timestamptz NOT NULL,
    due_at              timestamptz NOT NULL,  -- acknowledge by
    chain_started_at    timestamptz NOT NULL,  -- chain steps are timed from here
    escalation_level    integer NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
    next_escalation_at  timestamptz,           -- NULL: nothing more to fire
    status              text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'acknowledged', 'closed')),
    acknowledged_at     timestamptz,
    acknowledged_by     text,
    closed_at           timestamptz,
    policy_version      text NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'open' OR next_escalation_at IS NULL)
);
-- The timer's query: open tasks whose next step is due.
CREATE INDEX dispatch_tasks_due ON dispatch_tasks (next_escalation_at)
    WHERE status = 'open' AND next_escalation_at IS NOT NULL;
CREATE INDEX dispatch_tasks_open ON dispatch_tasks (due_at) WHERE status = 'open';

-- Each fired step of a chain, once: (task, chain severity, level) is the step's identity.
CREATE TABLE escalations (
    id        bigserial PRIMARY KEY,
    task_id   text NOT NULL REFERENCES dispatch_tasks (id),
    alarm_id  text NOT NULL REFERENCES alarms (id),
    severity  text NOT NULL,  -- the chain the step belongs to
    level     integer NOT NULL CHECK (level >= 1),
    target    text NOT NULL,
    due_at    timestamptz NOT NULL,
    at        timestamptz NOT NULL,  -- when it fired (later than due_at after a restart)
    UNIQUE (task_id, severity, level)
);

-- Notifications owed to the insurer; the insurer webhooks deliver and stamp them.
CREATE TABLE insurer_outbox (
    id            bigserial PRIMARY KEY,
    alarm_id      text NOT NULL REFERENCES alarms (id),
    kind          text NOT NULL DEFAULT 'severe_alarm',
    created_at    timestamptz NOT NULL,
    payload       jsonb NOT NULL,
    delivered_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    UNIQUE (alarm_id, kind)
);
CREATE INDEX insurer_outbox_pending ON insurer_outbox (id) WHERE delivered_at IS NULL;
