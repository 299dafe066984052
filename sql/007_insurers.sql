-- Insurers: policies with consent, API keys, the access log, the alarm change feed,
-- claims with evidence and outcomes, and signed webhooks fed from insurer_outbox.
-- The rules live in telematics/insurer/ (pure modules); this file holds the data and the
-- two triggers that must run inside the writers' transactions.

CREATE TABLE insurers (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);

-- An insurer covers one vehicle or a whole fleet for [starts_at, ends_at), with the
-- data it may see: 'events' (alarms, feed, scores, reports, webhooks), 'locations'
-- (positions, tracks), 'evidence' (claim evidence packets).
CREATE TABLE insurer_policies (
    id             text PRIMARY KEY,
    insurer_id     text NOT NULL REFERENCES insurers (id),
    policy_number  text,
    fleet_id       text REFERENCES fleets (id),
    vehicle_id     text REFERENCES vehicles (id),
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    consent        text[] NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    CHECK ((fleet_id IS NULL) <> (vehicle_id IS NULL)),
    CHECK (ends_at > starts_at),
    CHECK (consent <@ ARRAY['events', 'locations', 'evidence']::text[])
);
CREATE INDEX insurer_policies_insurer ON insurer_policies (insurer_id) WHERE revoked_at IS NULL;

-- The vehicles an insurer may see now for one consent scope, and the period of data each
-- policy opens (an insurer never sees data from before or after its cover). Both the API
-- and the webhook fan-out use it, so they cannot disagree.
CREATE FUNCTION insurer_coverage(p_insurer text, p_scope text, p_now timestamptz)
RETURNS TABLE (vehicle_id text, covered_from timestamptz, covered_until timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT p.vehicle_id, p.starts_at, p.ends_at
    FROM insurer_policies p JOIN insurers i ON i.id = p.insurer_id
    WHERE p.insurer_id = p_insurer AND i.disabled_at IS NULL AND p.revoked_at IS NULL
      AND p.vehicle_id IS NOT NULL AND p_scope = ANY (p.consent)
      AND p.starts_at <= p_now AND p_now < p.ends_at
    UNION ALL
    SELECT v.id, p.starts_at, p.ends_at
    FROM insurer_policies p JOIN insurers i ON i.id = p.insurer_id
    JOIN vehicles v ON v.fleet_id = p.fleet_id
    WHERE p.insurer_id = p_insurer AND i.disabled_at IS NULL AND p.revoked_at IS NULL
      AND p.fleet_id IS NOT NULL AND p_scope = ANY (p.consent)
      AND p.starts_at <= p_now AND p_now < p.ends_at
$$;

-- Only a SHA-256 of each key is stored (256-bit random keys, like operator tokens).
-- scopes: what the key may call (feed, scores, reports, claims, webhooks).
CREATE TABLE insurer_api_keys (
    key_hash    bytea PRIMARY KEY,
    insurer_id  text NOT NULL REFERENCES insurers (id),
    prefix      text NOT NULL,  -- the first characters, to tell keys apart in listings
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX insurer_api_keys_insurer ON insurer_api_keys (insurer_id);

-- Every insurer request (reads and writes), with the vehicles whose data it returned.
CREATE TABLE insurer_access_log (
    id           bigserial PRIMARY KEY,
    insurer_id   text NOT NULL REFERENCES insurers (id),
    key_prefix   text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    method       text NOT NULL,
    path         text NOT NULL,
    query        text NOT NULL,
    status       integer NOT NULL,
    vehicle_ids  text[] NOT NULL DEFAULT '{}',
    items        integer NOT NULL DEFAULT 0
);
CREATE INDEX insurer_access_log_insurer_at ON insurer_access_log (insurer_id, at);

-- The evidence packet and the risk scores read a vehicle's telemetry by time; the only
-- index so far was (vehicle_id, seq). Created on every month partition, present and future.
CREATE INDEX telemetry_vehicle_ts ON telemetry (vehicle_id, ts);

-- The alarm change feed. Each insert or insurer-visible change of an alarm adds a row with
-- the id of the writing transaction (xid). Readers return only rows whose xid is below
-- the oldest transaction still running (pg_snapshot_xmin of their snapshot): every
-- transaction below that horizon has ended, so no row can ever appear behind a cursor
-- (xid, id) taken from such a row. A bigserial alone is not enough: numbers are drawn at
-- insert time but become visible at commit, in another order, so a reader could pass 11
-- before 10 commits and never see 10. Writers never wait on each other for this.
CREATE TABLE alarm_changes (
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id          bigserial NOT NULL,
    alarm_id    text NOT NULL,
    vehicle_id  text NOT NULL,
    change      text NOT NULL CHECK (change IN ('opened', 'updated')),
    at          timestamptz NOT NULL DEFAULT now(),
    severity    text NOT NULL,
    kind        text NOT NULL,
    opened_at   timestamptz NOT NULL,
    alarm       jsonb NOT NULL,
    PRIMARY KEY (xid, id)
);
CREATE INDEX alarm_changes_vehicle ON alarm_changes (vehicle_id, xid, id);

-- What an insurer may see of an alarm: no operator names, positions only with consent
-- (the API drops lat/lon without 'locations').
CREATE FUNCTION alarm_feed_snapshot(a alarms) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'vehicle_id', a.vehicle_id, 'kind', a.kind, 'key', a.key,
        'severity', a.severity, 'reason', a.reason, 'derived', a.derived, 'level', a.level,
        'tire_pos', a.tire_pos, 'opened_at', a.first_ts, 'last_seen_at', a.last_ts,
        'occurrences', a.occurrences, 'lat', a.lat, 'lon', a.lon, 'speed_kmh', a.speed_kmh,
        'active', a.active, 'acknowledged', a.acknowledged, 'cleared_at', a.cleared_at,
        'clear_reason', a.clear_reason, 'acked_at', a.acked_at, 'late', a.late,
        'rules_version', a.rules_version)
$$;

CREATE FUNCTION alarm_changes_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alarm_changes (alarm_id, vehicle_id, change, severity, kind, opened_at, alarm)
    SELECT n.id, n.vehicle_id, 'opened', n.severity, n.kind, n.first_ts, alarm_feed_snapshot(n)
    FROM new_rows n ORDER BY n.first_ts, n.id;
    RETURN NULL;
END;
$$;

-- Only changes an insurer can see (an assignment or a comment is not one).
CREATE FUNCTION alarm_changes_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alarm_changes (alarm_id, vehicle_id, change, severity, kind, opened_at, alarm)
    SELECT n.id, n.vehicle_id, 'updated', n.severity, n.kind, n.first_ts, alarm_feed_snapshot(n)
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE alarm_feed_snapshot(n) IS DISTINCT FROM alarm_feed_snapshot(o)
    ORDER BY n.first_ts, n.id;
    RETURN NULL;
END;
$$;

-- Statement triggers: one INSERT … SELECT per COPY or UPDATE, not one per row.
CREATE TRIGGER alarm_changes_insert AFTER INSERT ON alarms
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION alarm_changes_on_insert();
CREATE TRIGGER alarm_changes_update AFTER UPDATE ON alarms
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION alarm_changes_on_update();

-- The alarms already there enter the feed once, as opened.
INSERT INTO alarm_changes (alarm_id, vehicle_id, change, severity, kind, opened_at, alarm)
SELECT a.id, a.vehicle_id, 'opened', a.severity, a.kind, a.first_ts, alarm_feed_snapshot(a)
FROM alarms a ORDER BY a.first_ts, a.id;

-- Webhook endpoints. The secret must be readable to sign (HMAC), so it is stored as is.
-- Rotation keeps the previous secret signing too until previous_expires_at.
CREATE TABLE webhook_endpoints (
    id                   text PRIMARY KEY,
    insurer_id           text NOT NULL REFERENCES insurers (id),
    url                  text NOT NULL,
    event_types          text[] NOT NULL
                         CHECK (event_types <@ ARRAY['alarm.severe', 'collision.detected',
                                                     'evidence.ready']::text[]),
    secret               text NOT NULL,
    previous_secret      text,
    previous_expires_at  timestamptz,
    description          text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    disabled_at          timestamptz,
    disabled_reason      text
);
CREATE INDEX webhook_endpoints_insurer ON webhook_endpoints (insurer_id);

-- The durable outbox of webhook messages: one row per (event, endpoint). webhook_id is the
-- Standard Webhooks message id, the same on every attempt so receivers can deduplicate.
CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    webhook_id       text NOT NULL UNIQUE,
    endpoint_id      text NOT NULL REFERENCES webhook_endpoints (id),
    insurer_id       text NOT NULL REFERENCES insurers (id),
    event_type       text NOT NULL,
    source           text NOT NULL,  -- 'outbox:<id>' or 'claim:<id>': one message per source
    vehicle_id       text,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'disabled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    retry_until      timestamptz NOT NULL DEFAULT now() + interval '3 days',  -- then 'failed'
    delivered_at     timestamptz,
    last_status      integer,
    last_error       text,
    UNIQUE (source, endpoint_id, event_type)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

-- The delivery log: every attempt and what the receiver answered.
CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES webhook_deliveries (id),
    at           timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text,
    duration_ms  real NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- Fan-out in the transaction that writes the insurer notice (the ingest writer's, the
-- same as the alarm's): a committed severe alarm always has its webhook messages. The
-- AFTER trigger only sees rows really inserted, so a replayed notice (ON CONFLICT DO
-- NOTHING) fans out nothing twice. delivered_at then means "handed to the webhooks".
CREATE FUNCTION insurer_outbox_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, endpoint_id, insurer_id, event_type, source,
                                    vehicle_id, payload)
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), e.id, e.insurer_id, t.type,
           'outbox:' || NEW.id, a.vehicle_id,
           jsonb_build_object('type', t.type, 'timestamp', NEW.created_at,
                              'data', NEW.payload || jsonb_build_object(
                                  'fleet_id', v.fleet_id, 'outbox_id', NEW.id))
    FROM alarms a
    JOIN vehicles v ON v.id = a.vehicle_id
    CROSS JOIN (VALUES ('alarm.severe'), ('collision.detected')) AS t(type)
    JOIN webhook_endpoints e ON t.type = ANY (e.event_types) AND e.disabled_at IS NULL
    WHERE a.id = NEW.alarm_id
      AND (t.type = 'alarm.severe' OR a.kind IN ('collision', 'rollover'))
      AND EXISTS (SELECT 1 FROM insurer_coverage(e.insurer_id, 'events', NEW.created_at) c
                  WHERE c.vehicle_id = a.vehicle_id
                    AND a.first_ts >= c.covered_from AND a.first_ts < c.covered_until)
    ON CONFLICT DO NOTHING;
    UPDATE insurer_outbox SET delivered_at = now() WHERE id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER insurer_outbox_fan_out AFTER INSERT ON insurer_outbox
    FOR EACH ROW EXECUTE FUNCTION insurer_outbox_fan_out();

-- First notice of loss. (insurer, idempotency_key) is unique: a retried POST returns the
-- claim it created; request_hash tells a retry from a different request with the same key.
CREATE TABLE claims (
    id               text PRIMARY KEY,
    insurer_id       text NOT NULL REFERENCES insurers (id),
    idempotency_key  text NOT NULL,
    request_hash     bytea NOT NULL,
    vehicle_id       text NOT NULL REFERENCES vehicles (id),
    occurred_at      timestamptz NOT NULL,
    lat              double precision,
    lon              double precision,
    place            text,
    description      text NOT NULL,
    reference        text,  -- the insurer's own claim number
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (insurer_id, idempotency_key)
);
CREATE INDEX claims_insurer ON claims (insurer_id, created_at);

-- The evidence packet as built when the claim came in, frozen (sha256 over the JSON
-- bytes served), so what the insurer downloads later is what was reported.
CREATE TABLE claim_evidence (
    claim_id  text PRIMARY KEY REFERENCES claims (id),
    built_at  timestamptz NOT NULL,
    packet    jsonb NOT NULL,
    sha256    text NOT NULL
);

-- Training labels for the severity model (ml/): what a claim turned out to be. One row
-- per claim, replaced when the insurer posts a new outcome (updated_at moves).
CREATE TABLE claim_outcomes (
    claim_id      text PRIMARY KEY REFERENCES claims (id),
    insurer_id    text NOT NULL REFERENCES insurers (id),
    vehicle_id    text NOT NULL REFERENCES vehicles (id),
    occurred_at   timestamptz NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('paid', 'partially_paid', 'denied',
                                                   'withdrawn')),
    at_fault      boolean,          -- NULL: not established
    loss_amount   numeric(14, 2) CHECK (loss_amount >= 0),
    currency      text CHECK (currency ~ '^[A-Z]{3}$'),
    injuries      boolean,
    alarm_ids     text[] NOT NULL,  -- the vehicle's alarms within ±15 min of occurred_at
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claim_outcomes_vehicle_time ON claim_outcomes (vehicle_id, occurred_at);
