-- The batch writer's flush stored a flush's alarms, their repeats, the live views'
-- notices, the lifecycle rows (audit, dispatcher tasks, insurer outbox), the
-- interventions and the units' delivery reports with eight statements, nine round trips.
-- At 5,000 units x 1 Hz nearly every flush has some, and on a busy host each round trip
-- waited ~2-3 ms for the database and the writer to be scheduled: ~12 of a flush's ~40 ms
-- (BENCHMARKS.md). apply_alarm_rows takes them as one JSON document and runs the same
-- statements, in the same order, in one call. Each key is optional; every statement
-- skips rows of alarms that are not stored (a duplicate dropped by another worker) and
-- writes nothing twice (a retried flush), as before.
--
-- doc keys (arrays of objects named by column, timestamps as ISO 8601 text):
--   alarms         new alarms (the columns of store.writer.ALARM_COLUMNS)
--   repeats        {id, last_seq, last_ts, n, severity, reason, sev_rank, probability,
--                   model_version, factors}: one per alarm; a higher rank replaces the grade
--   news           pre-encoded JSON texts for pg_notify on telematics_alarms_raised
--   audit          {alarm_id, at, actor, action, detail}, inserted in array order
--   tasks          dispatch_tasks rows; an alarm that has a task keeps it
--   insurer        {alarm_id, kind, created_at, payload}
--   interventions  interventions rows, each with its first history row ('issued')
--   statuses       {vehicle_id, id, status, at}: the units' reports on their interventions
-- The elements of a JSON array, as the planner should count them. jsonb_to_recordset
-- claims 100 rows for any array; a flush has a handful. On tables of a few thousand rows
-- (a young database) that made hash joins over whole-table scans of alarms and
-- interventions look cheaper than finding the few rows by key
-- (tests/store/test_writer_plans.py). A PL/pgSQL function is never inlined, so its
-- ROWS stands.
CREATE FUNCTION json_rows(doc jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql IMMUTABLE ROWS 10 AS $$
BEGIN
    RETURN QUERY SELECT jsonb_array_elements(doc);
END;
$$;

CREATE FUNCTION apply_alarm_rows(doc jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF doc ? 'alarms' THEN
        INSERT INTO alarms (id, vehicle_id, kind, key, severity, reason, derived, level,
                            tire_pos, first_seq, first_ts, last_seq, last_ts, occurrences,
                            lat, lon, speed_kmh, rules_version, late, probability,
                            model_version, factors)
        SELECT r.id, r.vehicle_id, r.kind, r.key, r.severity, r.reason, r.derived, r.level,
               r.tire_pos, r.first_seq, r.first_ts, r.last_seq, r.last_ts, r.occurrences,
               r.lat, r.lon, r.speed_kmh, r.rules_version, r.late, r.probability,
               r.model_version, r.factors
        FROM json_rows(doc->'alarms') AS e(r), jsonb_to_record(e.r) AS r(
            id text, vehicle_id text, kind text, key text, severity text, reason text,
            derived boolean, level smallint, tire_pos text, first_seq bigint,
            first_ts timestamptz, last_seq bigint, last_ts timestamptz, occurrences int,
            lat float8, lon float8, speed_kmh real, rules_version text, late boolean,
            probability real, model_version text, factors text[]);
    END IF;

    IF doc ? 'repeats' THEN
        UPDATE alarms a SET last_seq = greatest(a.last_seq, u.last_seq),
               last_ts = greatest(a.last_ts, u.last_ts),
               occurrences = a.occurrences + u.n,
               severity = CASE WHEN u.sev_rank > a.severity_rank
                               THEN u.severity ELSE a.severity END,
               reason = CASE WHEN u.sev_rank > a.severity_rank THEN u.reason ELSE a.reason END,
               probability = CASE WHEN u.sev_rank > a.severity_rank
                                  THEN u.probability ELSE a.probability END,
               model_version = CASE WHEN u.sev_rank > a.severity_rank
                                    THEN u.model_version ELSE a.model_version END,
               factors = CASE WHEN u.sev_rank > a.severity_rank
                              THEN u.factors ELSE a.factors END
        FROM json_rows(doc->'repeats') AS e(r), jsonb_to_record(e.r) AS u(
            id text, last_seq bigint, last_ts timestamptz, n int, severity text, reason text,
            sev_rank int, probability real, model_version text, factors text[])
        WHERE a.id = u.id;
    END IF;

    IF doc ? 'news' THEN
        PERFORM pg_notify('telematics_alarms_raised', n)
        FROM jsonb_array_elements_text(doc->'news') AS n;
    END IF;

    IF doc ? 'audit' THEN
        INSERT INTO alarm_audit (alarm_id, at, actor, action, detail)
        SELECT u.alarm_id, u.at, u.actor, u.action, coalesce(u.detail, '{}')
        FROM json_rows(doc->'audit') WITH ORDINALITY AS e(r, n),
             jsonb_to_record(e.r) AS u(alarm_id text, at timestamptz, actor text, action text,
                                       detail jsonb)
        WHERE EXISTS (SELECT 1 FROM alarms a WHERE a.id = u.alarm_id)
        ORDER BY e.n
        ON CONFLICT DO NOTHING;
    END IF;

    IF doc ? 'tasks' THEN
        INSERT INTO dispatch_tasks (id, alarm_id, vehicle_id, severity, created_at, due_at,
                                    chain_started_at, escalation_level, next_escalation_at,
                                    status, acknowledged_at, acknowledged_by, closed_at,
                                    policy_version)
        SELECT u.id, u.alarm_id, u.vehicle_id, u.severity, u.created_at, u.due_at,
               u.chain_started_at, u.escalation_level, u.next_escalation_at, u.status,
               u.acknowledged_at, u.acknowledged_by, u.closed_at, u.policy_version
        FROM json_rows(doc->'tasks') AS e(r), jsonb_to_record(e.r) AS u(
            id text, alarm_id text, vehicle_id text, severity text, created_at timestamptz,
            due_at timestamptz, chain_started_at timestamptz, escalation_level int,
            next_escalation_at timestamptz, status text, acknowledged_at timestamptz,
            acknowledged_by text, closed_at timestamptz, policy_version text)
        WHERE EXISTS (SELECT 1 FROM alarms a WHERE a.id = u.alarm_id)
        ON CONFLICT DO NOTHING;
    END IF;

    IF doc ? 'insurer' THEN
        INSERT INTO insurer_outbox (alarm_id, kind, created_at, payload)
        SELECT u.alarm_id, u.kind, u.created_at, u.payload
        FROM json_rows(doc->'insurer') AS e(r), jsonb_to_record(e.r) AS u(
            alarm_id text, kind text, created_at timestamptz, payload jsonb)
        WHERE EXISTS (SELECT 1 FROM alarms a WHERE a.id = u.alarm_id)
        ON CONFLICT (alarm_id, kind) DO NOTHING;
    END IF;

    IF doc ? 'interventions' THEN
        WITH ins AS (
            INSERT INTO interventions (id, alarm_id, vehicle_id, severity, action, message,
                                       cause_seq, cause_kind, issued_at, status, status_at)
            SELECT u.id, u.alarm_id, u.vehicle_id, u.severity, u.action, u.message,
                   u.cause_seq, u.cause_kind, u.issued_at, 'issued', u.issued_at
            FROM json_rows(doc->'interventions') AS e(r), jsonb_to_record(e.r) AS u(
                id text, alarm_id text, vehicle_id text, severity text, action text,
                message text, cause_seq bigint, cause_kind text, issued_at timestamptz)
            WHERE EXISTS (SELECT 1 FROM alarms a WHERE a.id = u.alarm_id)
            RETURNING id, issued_at)
        INSERT INTO intervention_status (intervention_id, status, at, source)
        SELECT id, 'issued', issued_at, 'server' FROM ins;
    END IF;

    IF doc ? 'statuses' THEN
        -- Every report of the vehicle's own interventions is recorded (unknown ids are
        -- ignored, never fatal to the batch); each status only moves forward.
        WITH u AS (
            SELECT t.*, array_position(
                ARRAY['issued','delivered','played','driver_confirmed'], t.status) AS rank
            FROM json_rows(doc->'statuses') AS e(r), jsonb_to_record(e.r) AS t(
                vehicle_id text, id text, status text, at timestamptz)),
        mine AS (SELECT u.* FROM u JOIN interventions i
                 ON i.id = u.id AND i.vehicle_id = u.vehicle_id),
        history AS (INSERT INTO intervention_status (intervention_id, status, at, source)
                    SELECT id, status, at, 'device' FROM mine),
        best AS (SELECT DISTINCT ON (id) id, status, at, rank FROM mine
                 ORDER BY id, rank DESC)
        UPDATE interventions i SET status = best.status, status_at = best.at
        FROM best
        WHERE i.id = best.id AND i.status <> 'expired'
          AND best.rank > array_position(
                ARRAY['issued','delivered','played','driver_confirmed'], i.status);
    END IF;
END;
$$;
