-- The roll-up job (telematics/insurer/rollup.py) takes the newest closed hours first:
-- after an upgrade a server holds months of hours to sum, and insurers ask for the last
-- days first. Keyed by hour, the index hands them over in order however large the
-- backlog (by vehicle first, each batch sorted every waiting hour); a request's
-- vehicles and window still narrow it to a range of hours.
DROP INDEX telemetry_hours_unrolled;
CREATE INDEX telemetry_hours_unrolled ON telemetry_hours (hour, vehicle_id)
    WHERE rolled_version IS DISTINCT FROM version;
