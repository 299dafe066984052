-- Dashboard sign-in: operators get a password (scrypt, see telematics/dashboard/passwords.py)
-- and server-side sessions; the live fleet view reads one row per vehicle.
ALTER TABLE operators ADD COLUMN password_hash text;

-- Only a SHA-256 of the session id is stored; the cookie holds the id itself.
CREATE TABLE operator_sessions (
    id_hash      bytea PRIMARY KEY,
    operator_id  text NOT NULL REFERENCES operators (id),
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

-- The latest fix of each vehicle, upserted by the batch writer once per flush (one
-- statement), so the live map and list never scan the partitioned telemetry.
CREATE TABLE vehicle_status (
    vehicle_id   text PRIMARY KEY REFERENCES vehicles (id),
    ts           timestamptz NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    double precision NOT NULL,
    heading_deg  double precision,
    driver_id    text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vehicle_status_updated ON vehicle_status (updated_at);

-- The queue shows each alarm's interventions and their delivery status.
CREATE INDEX interventions_alarm ON interventions (alarm_id);
