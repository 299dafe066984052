"""``telematics zone import|list|remove`` through its own argparse group and a real database.

The group is wired into ``telematics.cli`` separately, so these tests build a parser with
``add_arguments`` and call ``zone_command`` like ``telematics.cli.main`` would.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from telematics.config import Settings
from telematics.geo.cli import add_arguments, zone_command
from telematics.geo.zones import UnknownZone, ZoneError, zones_from_feature_collection

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "zones-suzhou.geojson"


def run(db_url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="telematics")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args, Settings(database_url=db_url))
    assert args.func is zone_command
    return code


def sample() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return doc


def test_import_list_remove(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f["properties"]["id"] for f in sample()["features"]]
    assert run(db_url, "zone", "import", str(SAMPLE)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{i} added" for i in ids]
    assert f"imported {len(ids)} zones ({len(ids)} added)" in err

    # re-import with one zone edited: one line per zone id, only the edit is replaced
    doc = sample()
    doc["features"][0]["properties"]["speed_limit_kmh"] = 10
    edited = tmp_path / "edited.geojson"
    edited.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    assert run(db_url, "zone", "import", str(edited)) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == [f"{ids[0]} replaced"] + [f"{i} unchanged" for i in ids[1:]]

    assert run(db_url, "zone", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == sorted(ids)
    depot = next(line for line in lines if line.startswith(ids[0])).split("\t")
    assert depot[1:4] == ["depot", "10km/h", "600s"] and "汽车北站" in depot[4]

    assert run(db_url, "zone", "list", "--json") == 0
    listed = zones_from_feature_collection(json.loads(capsys.readouterr().out))
    assert listed == sorted(zones_from_feature_collection(doc), key=lambda z: z.id)

    assert run(db_url, "zone", "remove", ids[1]) == 0
    assert f"removed zone {ids[1]}" in capsys.readouterr().err
    run(db_url, "zone", "list")
    assert ids[1] not in capsys.readouterr().out
    with pytest.raises(UnknownZone, match="no such zone"):
        run(db_url, "zone", "remove", ids[1])


def test_bad_files_import_nothing(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = sample()
    doc["features"][2]["properties"]["kind"] = "mall"
    doc["features"][5]["geometry"]["coordinates"][0] = [[31.3, 120.6], [31.4, 120.6], [31.3, 120.7]]
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ZoneError) as caught:
        run(db_url, "zone", "import", str(bad))
    msg = str(caught.value)
    assert "features[2]" in msg and "kind: must be one of" in msg
    assert "features[5]" in msg and "geometry:" in msg
    not_json = tmp_path / "x.geojson"
    not_json.write_text("{nope", encoding="utf-8")
    with pytest.raises(ZoneError, match="not JSON"):
        run(db_url, "zone", "import", str(not_json))
    with pytest.raises(ZoneError, match="No such file"):
        run(db_url, "zone", "import", str(tmp_path / "missing.geojson"))
    assert run(db_url, "zone", "list") == 0
    assert capsys.readouterr().out == ""  # nothing was imported


def test_subcommand_is_required() -> None:
    parser = argparse.ArgumentParser(prog="telematics")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["zone"])
    with pytest.raises(SystemExit):
        parser.parse_args(["zone", "list", "--yaml"])
