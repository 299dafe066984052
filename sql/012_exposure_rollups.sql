-- Driven distance and time per vehicle, hour and driver, for insurers' scores and loss
-- reports (telematics/insurer/store/exposure.py). Without them every request walked
-- every fix of every covered vehicle over its window (30 days of 1 Hz fixes are 2.6
-- million rows a vehicle). A background job (telematics/insurer/rollup.py) sums each
-- closed hour once; requests add the rollups of whole hours to the fixes of the rest.
--
-- A rollup is current while its hour's mark has not changed since: the batch writer bumps
-- telemetry_hours.version whenever it stores fixes into an hour that has already closed
-- (a unit replaying what it buffered offline), so that hour is summed again.
ALTER TABLE telemetry_hours
    ADD COLUMN version bigint NOT NULL DEFAULT 1,
    ADD COLUMN rolled_version bigint;

-- Hours without a current rollup: the job's work list, and what requests read raw.
CREATE INDEX telemetry_hours_unrolled ON telemetry_hours (vehicle_id, hour)
    WHERE rolled_version IS DISTINCT FROM version;

CREATE TABLE exposure_hours (
    vehicle_id  text NOT NULL,
    hour        timestamptz NOT NULL,
    driver_id   text NOT NULL,  -- '' for fixes without a driver
    km          float8 NOT NULL,
    driving_s   float8 NOT NULL,
    PRIMARY KEY (vehicle_id, hour, driver_id)
);

-- What the rollups were summed with (risk_weights.json): other settings invalidate them.
CREATE TABLE exposure_rollup_params (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    gap_s       float8 NOT NULL,
    min_kmh     float8 NOT NULL
);
