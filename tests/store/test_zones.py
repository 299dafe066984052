"""Zones in PostgreSQL: add / replace / soft delete / list, and the change marker pollers use."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from shapely.geometry import Polygon

from telematics.geo.index import ZoneIndex
from telematics.geo.zones import UnknownZone, Zone, ZoneError, disc, zones_from_feature_collection
from telematics.store.zones import (
    add_zone,
    delete_zone,
    get_zone,
    import_zones,
    list_zones,
    replace_zone,
    upsert_zone,
    zones_snapshot,
    zones_version,
)

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "zones-suzhou.geojson"
SCHOOL = Zone("SCH", "school", "苏州中学", disc(120.6238, 31.2983, 150), 33.3, 45.5)
ROAD = Zone(
    "RD",
    "speed_limit",
    "南环高架",
    Polygon([(120.59, 31.2840), (120.65, 31.2840), (120.65, 31.2844), (120.59, 31.2844)]),
    60,
)


async def test_add_get_list_round_trip_exactly(db: asyncpg.Connection) -> None:
    assert await list_zones(db) == [] and await zones_version(db) == "0"
    await add_zone(db, SCHOOL)
    await add_zone(db, ROAD)
    assert await list_zones(db) == [ROAD, SCHOOL]  # by id; floats and geometry exact
    assert await get_zone(db, "SCH") == SCHOOL and await get_zone(db, "nope") is None
    row = await db.fetchrow("SELECT * FROM zones WHERE id = 'RD'")
    assert json.loads(row["geometry"])["type"] == "Polygon" and row["deleted_at"] is None
    with pytest.raises(ZoneError, match="zone 'SCH': id: already exists"):
        await add_zone(db, SCHOOL)


async def test_every_change_moves_the_version_and_no_op_does_not(db: asyncpg.Connection) -> None:
    await add_zone(db, SCHOOL)
    v1 = await zones_version(db)
    assert await upsert_zone(db, SCHOOL) == "unchanged"
    assert await zones_version(db) == v1
    faster = Zone("SCH", "school", "苏州中学", SCHOOL.geometry, 40, 45.5)
    await replace_zone(db, faster)
    v2 = await zones_version(db)
    assert int(v2) > int(v1) and await get_zone(db, "SCH") == faster
    await delete_zone(db, "SCH")
    v3 = await zones_version(db)
    assert int(v3) > int(v2)
    assert await list_zones(db) == [] and await get_zone(db, "SCH") is None
    # soft delete: the row stays for the transitions record
    assert await db.fetchval("SELECT deleted_at IS NOT NULL FROM zones WHERE id = 'SCH'")
    # re-adding a deleted id brings it back as new
    assert await upsert_zone(db, SCHOOL) == "added"
    assert int(await zones_version(db)) > int(v3) and await list_zones(db) == [SCHOOL]


async def test_unknown_zones(db: asyncpg.Connection) -> None:
    with pytest.raises(UnknownZone, match="zone 'SCH': id: no such zone"):
        await replace_zone(db, SCHOOL)
    with pytest.raises(UnknownZone):
        await delete_zone(db, "SCH")
    await add_zone(db, SCHOOL)
    await delete_zone(db, "SCH")
    with pytest.raises(UnknownZone):
        await delete_zone(db, "SCH")
    with pytest.raises(UnknownZone):
        await replace_zone(db, SCHOOL)


async def test_import_sample_file_and_snapshot(db: asyncpg.Connection) -> None:
    zones = zones_from_feature_collection(json.loads(SAMPLE.read_text(encoding="utf-8")))
    results = await import_zones(db, zones)
    assert [r for _, r in results] == ["added"] * len(zones)
    version, loaded = await zones_snapshot(db)
    assert loaded == sorted(zones, key=lambda z: z.id) and version == await zones_version(db)
    index = ZoneIndex(loaded, version)
    tunnel = index.containing(120.7184, 31.2700)
    assert [z.kind for z in tunnel] == ["tunnel"]
    again = await import_zones(db, zones)
    assert {r for _, r in again} == {"unchanged"} and await zones_version(db) == version
    with pytest.raises(ZoneError, match="duplicate"):
        await import_zones(db, [SCHOOL, SCHOOL])


async def test_versions_become_visible_in_order(db_url: str, db: asyncpg.Connection) -> None:
    """A poller that saw version N never later finds a change with a version ≤ N."""
    a = await asyncpg.connect(db_url)
    b = await asyncpg.connect(db_url)
    try:
        slow = a.transaction()
        await slow.start()
        await add_zone(a, SCHOOL)  # holds the zones lock until `slow` commits
        fast = asyncio.create_task(add_zone(b, ROAD))
        await asyncio.sleep(0.3)
        assert not fast.done()  # waits for the lock instead of taking a version first
        assert await zones_version(db) == "0"
        await slow.commit()
        await asyncio.wait_for(fast, 10)
        versions = dict(await db.fetch("SELECT id, version FROM zones"))
        assert versions["SCH"] < versions["RD"]
    finally:
        await a.close()
        await b.close()


async def test_schema_checks_and_transitions_table(
    db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    bad = "INSERT INTO zones (id, kind, name, geometry) VALUES ('X', $1, 'x', $2::jsonb)"
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(bad, "parking", '{"type": "Polygon", "coordinates": []}')
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(bad, "depot", '{"type": "Point", "coordinates": [0, 0]}')
    # a row broken by hand is skipped with a warning, the others still load
    await db.execute(
        bad, "depot", '{"type": "Polygon", "coordinates": [[[0,0],[1,1],[1,0],[0,1]]]}'
    )
    await add_zone(db, SCHOOL)
    with caplog.at_level(logging.WARNING, logger="telematics.store.zones"):
        assert await list_zones(db) == [SCHOOL]
    assert "zone 'X': geometry: invalid polygon" in caplog.text
    ts = datetime(2025, 3, 3, 8, tzinfo=UTC)
    await db.copy_records_to_table(
        "zone_transitions",
        columns=("vehicle_id", "zone_id", "transition", "ts", "seq", "lat", "lon"),
        records=[
            ("V1", "SCH", "enter", ts, 7, 31.2983, 120.6238),
            ("V1", "SCH", "dwell", ts, 9, 31.2983, 120.6238),
        ],
    )
    assert await db.fetchval("SELECT count(*) FROM zone_transitions WHERE zone_id = 'SCH'") == 2
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO zone_transitions VALUES ('V1', 'SCH', 'linger', now(), 1, 0, 0)"
        )
