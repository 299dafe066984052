-- Exposure rollups of the open hour (telematics/insurer/store/exposure.py). Whole-book
-- reads (scores, loss reports for thousands of vehicles) spent nearly all their time on
-- the fixes of the hour not rolled up yet: ~30 minutes a vehicle, 4 µs of PostgreSQL a
-- fix. The roll-up job now sums each hour five minutes at a time shortly after each
-- slice closes, adding to the hour's rows in exposure_hours; rolled_s says how much of
-- the hour they cover (3600: all). The writer bumps the hour's version for a fix whose
-- slice had closed (telematics/store/writer.py), so a rollup stays current while
-- rolled_version = version, as before.
ALTER TABLE telemetry_hours ADD COLUMN rolled_s integer;
UPDATE telemetry_hours SET rolled_s = 3600 WHERE rolled_version IS NOT NULL;

-- The job's work list and the hours requests cannot take whole from the rollups: stale,
-- or not summed to the end yet (the open hours, one a vehicle).
DROP INDEX telemetry_hours_unrolled;
CREATE INDEX telemetry_hours_unrolled ON telemetry_hours (hour, vehicle_id)
    WHERE rolled_version IS DISTINCT FROM version OR rolled_s IS DISTINCT FROM 3600;
