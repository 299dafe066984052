-- Where the fixes after a part-summed hour's rollup begin (telematics/insurer/store/
-- exposure.py): the lowest seq from the segment gap before rolled_s. Reads of the rest of
-- the open hour and the next slice's roll-up start there instead of at the hour's first
-- seq (sql/009), which scanned every fix since the hour began. Valid while the rollup is
-- (rolled_version = version); NULL when the hour is summed whole or not known.
ALTER TABLE telemetry_hours ADD COLUMN rolled_seq bigint;
