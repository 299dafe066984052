-- The latest fix of each vehicle rides on its ingest_cursor row, which the batch writer
-- rewrites in every flush anyway (one statement locks and advances the cursors), instead
-- of a second table rewritten every second (sql/008 vehicle_status). vehicle_status
-- stays, as a view, for the readers.
ALTER TABLE ingest_cursor
    ADD COLUMN fix_ts timestamptz,
    ADD COLUMN lat double precision,
    ADD COLUMN lon double precision,
    ADD COLUMN speed_kmh double precision,
    ADD COLUMN heading_deg double precision,
    ADD COLUMN driver_id text,
    ADD COLUMN fix_at timestamptz;
ALTER TABLE ingest_cursor SET (fillfactor = 70);  -- room for HOT updates

UPDATE ingest_cursor c
SET fix_ts = s.ts, lat = s.lat, lon = s.lon, speed_kmh = s.speed_kmh,
    heading_deg = s.heading_deg, driver_id = s.driver_id, fix_at = s.updated_at
FROM vehicle_status s WHERE s.vehicle_id = c.vehicle_id;
DROP TABLE vehicle_status;

CREATE VIEW vehicle_status AS
SELECT vehicle_id, fix_ts AS ts, lat, lon, speed_kmh, heading_deg, driver_id,
       fix_at AS updated_at
FROM ingest_cursor WHERE fix_ts IS NOT NULL;
