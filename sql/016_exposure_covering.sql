-- Whole-book reads sum ~720 rollup rows a vehicle for 30 days (1.3 million for 1,800
-- vehicles). Each row sat on its own heap page (the job writes an hour of every vehicle
-- at a time), so the read was a heap visit a row; with the sums in the key's index the
-- read is an index-only scan (once vacuum has marked the pages of past hours visible,
-- which autovacuum does on its own for a table that mostly grows).
ALTER TABLE exposure_hours
    DROP CONSTRAINT exposure_hours_pkey,
    ADD PRIMARY KEY (vehicle_id, hour, driver_id) INCLUDE (km, driving_s);
