-- When the server last heard from each unit: an item stored (set by the batch writer in
-- the flush that advances the cursor) or a (re)connect (noted by the alarm timer). The
-- unit_silent alarm (telematics/silence.py) measures a unit's silence from it, in the
-- server's clock, never the unit's: replayed items carry old timestamps. NULL: not heard
-- since this column exists, which the alarm never counts as silence. No index: the
-- writer rewrites the column in every flush, and an index would end its HOT updates.
ALTER TABLE ingest_cursor ADD COLUMN heard_at timestamptz;
