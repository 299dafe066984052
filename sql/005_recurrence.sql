-- Did the intervention work? The frozen recurrence outcome of each intervention
-- (telematics/report/recurrence.py), and the index its recurrence probe needs.

-- One row per intervention whose 30-minute window has closed; written once by
-- evaluate_outcomes() and never updated, so a late replay cannot rewrite history.
CREATE TABLE intervention_outcomes (
    intervention_id  text PRIMARY KEY REFERENCES interventions (id),
    recurred_10m     boolean NOT NULL,
    recurred_30m     boolean NOT NULL,
    evaluated_at     timestamptz NOT NULL,
    CHECK (recurred_30m OR NOT recurred_10m)  -- the 10-minute window lies inside the 30
);

-- "A new alarm of the same behaviour started in (issued_at, issued_at + 30 min]": a range
-- on first_ts per vehicle and key. alarms_vehicle_key is ordered by last_ts, which does not
-- bound first_ts, so that probe would walk every later alarm of the key.
CREATE INDEX alarms_vehicle_key_first ON alarms (vehicle_id, key, first_ts);
