-- Core schema: fleets, vehicles, device tokens, ingest cursor, telemetry, tire readings,
-- events, rejected items, alarms, interventions and their status history.

CREATE TABLE fleets (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vehicles (
    id             text PRIMARY KEY,
    fleet_id       text NOT NULL REFERENCES fleets (id),
    vehicle_class  text NOT NULL CHECK (vehicle_class IN ('coach', 'bus', 'hazmat', 'freight')),
    plate          text,
    tire_layout    text[] NOT NULL,
    placard_kpa    real NOT NULL CHECK (placard_kpa > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vehicles_fleet ON vehicles (fleet_id);

-- Only a SHA-256 of each token is stored; tokens are 256-bit random, so a fast hash is safe.
CREATE TABLE device_tokens (
    token_hash  bytea PRIMARY KEY,
    vehicle_id  text NOT NULL REFERENCES vehicles (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX device_tokens_vehicle ON device_tokens (vehicle_id);

-- Highest seq per vehicle that is stored or definitively rejected. The writer locks these
-- rows in every flush, which makes (vehicle, seq) unique across workers and partitions.
CREATE TABLE ingest_cursor (
    vehicle_id  text PRIMARY KEY REFERENCES vehicles (id),
    last_seq    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE telemetry (
    vehicle_id   text NOT NULL,
    seq          bigint NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    real NOT NULL,
    heading_deg  real,
    driver_id    text,
    ignition     boolean,
    odometer_km  double precision,
    extra        jsonb
) PARTITION BY RANGE (ts);

CREATE TABLE tire_readings (
    vehicle_id          text NOT NULL,
    seq                 bigint NOT NULL,
    ts                  timestamptz NOT NULL,
    pos                 text NOT NULL,
    kpa                 real,
    temp_c              real,
    sensor_battery_pct  real
) PARTITION BY RANGE (ts);

-- Monthly partitions are created on demand by the writer (old replays are fine).
-- Each telemetry partition carries the unique (vehicle_id, seq) index.
CREATE FUNCTION ensure_month_partitions(month_start date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    suffix text := to_char(month_start, 'YYYY_MM');
    next_month date := (month_start + interval '1 month')::date;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ensure_month_partitions'));
    IF to_regclass('telemetry_' || suffix) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                       'telemetry_' || suffix, month_start, next_month);
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (vehicle_id, seq)',
                       'telemetry_' || suffix || '_vehicle_seq', 'telemetry_' || suffix);
    END IF;
    IF to_regclass('tire_readings_' || suffix) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF tire_readings FOR VALUES FROM (%L) TO (%L)',
                       'tire_readings_' || suffix, month_start, next_month);
        EXECUTE format('CREATE INDEX %I ON %I (vehicle_id, pos, ts)',
                       'tire_readings_' || suffix || '_vehicle_pos_ts', 'tire_readings_' || suffix);
    END IF;
END;
$$;

CREATE TABLE events (
    vehicle_id   text NOT NULL,
    seq          bigint NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    kind         text NOT NULL,
    level        smallint,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    real NOT NULL,
    driver_id    text,
    attrs        jsonb,
    extra        jsonb,
    PRIMARY KEY (vehicle_id, seq)
);
CREATE INDEX events_vehicle_ts ON events (vehicle_id, ts);

-- Everything refused, byte for byte, with the reason sent to the unit.
CREATE TABLE rejected_items (
    id           bigserial PRIMARY KEY,
    vehicle_id   text,
    seq          bigint,
    received_at  timestamptz NOT NULL,
    code         text NOT NULL,
    reason       text NOT NULL,
    raw          bytea NOT NULL
);
CREATE INDEX rejected_items_vehicle ON rejected_items (vehicle_id, received_at);

CREATE TABLE alarms (
    id           text PRIMARY KEY,
    vehicle_id   text NOT NULL REFERENCES vehicles (id),
    kind         text NOT NULL,
    key          text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('general', 'moderate', 'severe')),
    reason       text NOT NULL,
    derived      boolean NOT NULL,
    level        smallint,
    tire_pos     text,
    first_seq    bigint NOT NULL,
    first_ts     timestamptz NOT NULL,
    last_seq     bigint NOT NULL,
    last_ts      timestamptz NOT NULL,
    occurrences  integer NOT NULL DEFAULT 1,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    real NOT NULL,
    rules_version text NOT NULL,
    late         boolean NOT NULL DEFAULT false,  -- replayed too late for an in-cab intervention
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alarms_vehicle_key ON alarms (vehicle_id, key, last_ts DESC);
CREATE INDEX alarms_created ON alarms (created_at);

CREATE TABLE interventions (
    id           text PRIMARY KEY,
    alarm_id     text NOT NULL REFERENCES alarms (id),
    vehicle_id   text NOT NULL REFERENCES vehicles (id),
    severity     text NOT NULL,
    action       text NOT NULL,
    message      text NOT NULL,
    cause_seq    bigint NOT NULL,
    cause_kind   text NOT NULL,
    issued_at    timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'issued'
                 CHECK (status IN ('issued', 'delivered', 'played', 'driver_confirmed', 'expired')),
    status_at    timestamptz NOT NULL
);
CREATE INDEX interventions_pending ON interventions (vehicle_id) WHERE status = 'issued';
CREATE INDEX interventions_issued ON interventions (issued_at);

CREATE TABLE intervention_status (
    intervention_id  text NOT NULL REFERENCES interventions (id),
    status           text NOT NULL,
    at               timestamptz NOT NULL,
    source           text NOT NULL  -- 'server' or 'device'
);
CREATE INDEX intervention_status_id ON intervention_status (intervention_id, at);
