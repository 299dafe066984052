-- Measured at 5,000 units x 1 Hz (BENCHMARKS.md): ack p99 rose from ~200 ms to ~2 s once
-- the insurer feed trigger and the dashboard's vehicle_status were on the write path.

-- vehicle_status is derived (the latest fix, rewritten every second per vehicle):
-- unlogged (no WAL; after a crash it refills within a second of data), no index but the
-- key and room on each page, so the updates stay HOT.
DROP INDEX vehicle_status_updated;
ALTER TABLE vehicle_status SET UNLOGGED;
ALTER TABLE vehicle_status SET (fillfactor = 50);

-- The insurers' feed records the changes an insurer acts on (severity, clear,
-- acknowledgement), not every repeat of an open alarm: repeats are most alarm updates.
-- Each recorded change still carries the full snapshot (occurrences included).
CREATE OR REPLACE FUNCTION alarm_changes_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alarm_changes (alarm_id, vehicle_id, change, severity, kind, opened_at, alarm)
    SELECT n.id, n.vehicle_id, 'updated', n.severity, n.kind, n.first_ts, alarm_feed_snapshot(n)
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE (n.severity, n.active, n.acknowledged, n.cleared_at, n.clear_reason, n.acked_at)
          IS DISTINCT FROM
          (o.severity, o.active, o.acknowledged, o.cleared_at, o.clear_reason, o.acked_at)
    ORDER BY n.first_ts, n.id;
    RETURN NULL;
END;
$$;

-- Telemetry by vehicle and time (evidence packets, exposure for risk scores) without a
-- second index on the busiest table: one mark per vehicle and hour, the first seq seen in
-- that hour, written by the batch writer when a vehicle's hour changes (about one row
-- per vehicle an hour instead of an index entry per reading). A time range becomes a seq
-- range on the unique (vehicle_id, seq) index; a unit's seq grows with its clock.
DROP INDEX telemetry_vehicle_ts;
CREATE TABLE telemetry_hours (
    vehicle_id  text NOT NULL,
    hour        timestamptz NOT NULL,
    first_seq   bigint NOT NULL,
    PRIMARY KEY (vehicle_id, hour)
);
INSERT INTO telemetry_hours (vehicle_id, hour, first_seq)
SELECT vehicle_id, date_trunc('hour', ts), min(seq) FROM telemetry GROUP BY 1, 2;

-- The seq range [lo, hi) holding a vehicle's fixes in [t0, t1): from the mark of t0's
-- hour (or the last one before) to the first mark after t1.
CREATE FUNCTION telemetry_seq_range(p_vehicle text, p_from timestamptz, p_until timestamptz,
                                    OUT lo bigint, OUT hi bigint)
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT h.first_seq FROM telemetry_hours h
                     WHERE h.vehicle_id = p_vehicle AND h.hour <= date_trunc('hour', p_from)
                     ORDER BY h.hour DESC LIMIT 1), 0),
           coalesce((SELECT h.first_seq FROM telemetry_hours h
                     WHERE h.vehicle_id = p_vehicle AND h.hour > p_until
                     ORDER BY h.hour LIMIT 1), 9223372036854775807)
$$;
