-- A trained severity model (ml/, issue 4) grades alarms when one is active. Each
-- model-graded alarm keeps what explains its severity: the probability of a collision
-- within the horizon, the model version, and the factors that raised it most, in words.
-- All NULL for an alarm graded by the rules (rules_version says which policy).
ALTER TABLE alarms
    ADD COLUMN probability real CHECK (probability BETWEEN 0 AND 1),
    ADD COLUMN model_version text,
    ADD COLUMN factors text[];

-- Insurers see how each alarm was graded, too.
CREATE OR REPLACE FUNCTION alarm_feed_snapshot(a alarms) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'vehicle_id', a.vehicle_id, 'kind', a.kind, 'key', a.key,
        'severity', a.severity, 'reason', a.reason, 'derived', a.derived, 'level', a.level,
        'tire_pos', a.tire_pos, 'opened_at', a.first_ts, 'last_seen_at', a.last_ts,
        'occurrences', a.occurrences, 'lat', a.lat, 'lon', a.lon, 'speed_kmh', a.speed_kmh,
        'active', a.active, 'acknowledged', a.acknowledged, 'cleared_at', a.cleared_at,
        'clear_reason', a.clear_reason, 'acked_at', a.acked_at, 'late', a.late,
        'rules_version', a.rules_version, 'probability', a.probability,
        'model_version', a.model_version, 'factors', a.factors)
$$;
