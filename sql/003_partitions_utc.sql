-- Month partitions are bounded in UTC whatever the session's TimeZone, matching how the
-- writer picks the month of a timestamp (a +08:00 reading near midnight stays in its
-- UTC month).
CREATE OR REPLACE FUNCTION ensure_month_partitions(month_start date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    suffix text := to_char(month_start, 'YYYY_MM');
    lower_bound timestamptz := month_start::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ensure_month_partitions'));
    IF to_regclass('telemetry_' || suffix) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                       'telemetry_' || suffix, lower_bound, upper_bound);
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (vehicle_id, seq)',
                       'telemetry_' || suffix || '_vehicle_seq', 'telemetry_' || suffix);
    END IF;
    IF to_regclass('tire_readings_' || suffix) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF tire_readings FOR VALUES FROM (%L) TO (%L)',
                       'tire_readings_' || suffix, lower_bound, upper_bound);
        EXECUTE format('CREATE INDEX %I ON %I (vehicle_id, pos, ts)',
                       'tire_readings_' || suffix || '_vehicle_pos_ts', 'tire_readings_' || suffix);
    END IF;
END;
$$;

-- received_at is the commit's transaction time: one less value to encode per reading.
ALTER TABLE telemetry ALTER COLUMN received_at SET DEFAULT now();
