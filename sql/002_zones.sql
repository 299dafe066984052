-- Geofence zones (GeoJSON in jsonb: PostGIS is not required) and the zone transitions record.

-- Every change to a zone takes the next value; servers poll max(version) to know when to
-- reload. Writers hold an advisory lock while they change zones (store/zones.py), so
-- versions become visible in increasing order and a poller never skips one.
CREATE SEQUENCE zones_version_seq;

CREATE TABLE zones (
    id               text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('depot', 'school', 'tunnel',
                                                   'hazmat_restricted', 'speed_limit',
                                                   'flood_prone')),
    name             text NOT NULL,
    geometry         jsonb NOT NULL
                     CHECK (geometry ->> 'type' IN ('Polygon', 'MultiPolygon')),
    speed_limit_kmh  double precision CHECK (speed_limit_kmh > 0),  -- exact round trip
    dwell_s          double precision CHECK (dwell_s >= 0),
    version          bigint NOT NULL DEFAULT nextval('zones_version_seq'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz  -- soft delete: the row stays for the transitions record
);
CREATE INDEX zones_version ON zones (version);

-- What the geofence stage observed, one row per transition; the writer COPYs into it.
CREATE TABLE zone_transitions (
    vehicle_id  text NOT NULL,
    zone_id     text NOT NULL,
    transition  text NOT NULL CHECK (transition IN ('enter', 'exit', 'dwell')),
    ts          timestamptz NOT NULL,
    seq         bigint NOT NULL,  -- the telemetry item that revealed it
    lat         double precision NOT NULL,
    lon         double precision NOT NULL
);
CREATE INDEX zone_transitions_vehicle_ts ON zone_transitions (vehicle_id, ts);
CREATE INDEX zone_transitions_zone_ts ON zone_transitions (zone_id, ts);
