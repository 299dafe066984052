"""Bad input to the command line: a clear one-line error and a non-zero exit, never a
traceback, and nothing half-stored.

Every case runs the real entry point (``telematics.cli.main``, what the console script
calls) in-process: against a fresh test database when the command must get that far to
judge its input, else against none. An exception escaping ``main`` is what a user would
see as a traceback, so the helper turns it into one on "stderr". Where a command stores
anything, the case also checks that nothing was stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from telematics.cli import main
from tests.helpers import with_database

LONG = "V" * 10_000


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Cli = Callable[..., Run]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The CLI with no database: nothing listens on port 1, so a command that gets as far
    as connecting fails there (and never starts the embedded PostgreSQL)."""
    for name in [n for n in os.environ if n.startswith("TELEMATICS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TELEMATICS_DATABASE_URL", "postgresql://127.0.0.1:1/none")
    monkeypatch.setenv("TELEMATICS_LOG_LEVEL", "WARNING")
    return lambda *argv: invoke(capsys, *argv)


STORED = ("fleets", "vehicles", "device_tokens", "ingest_cursor", "zones", "insurers",
          "insurer_policies", "insurer_api_keys", "operators")  # fmt: skip


def query(db_url: str, sql: str) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(db_url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def stored(db_url: str) -> dict[str, int]:
    """Rows per table a command could write: a refused command changes none of them."""
    counts = ", ".join(f"'{t}', (SELECT count(*) FROM {t})" for t in STORED)
    return dict(json.loads(query(db_url, f"SELECT json_build_object({counts})::text")))


@pytest.fixture(scope="module")
def shared_db(admin_url: str, template_db: str) -> Iterator[str]:
    """One database for the module's refusals (a fresh one per case costs most of the
    module's time): fleet F1 and insurer pingan exist, and no case may change a thing."""
    name = f"telematics_bad_input_{os.getpid()}"
    query(admin_url, f"CREATE DATABASE {name} TEMPLATE {template_db}")
    url = with_database(admin_url, name)
    query(url, "INSERT INTO fleets (id, name) VALUES ('F1', 'F1')")
    query(url, "INSERT INTO insurers (id, name) VALUES ('pingan', 'Ping An')")
    yield url
    query(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_cli(cli: Cli, shared_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The CLI on the shared database; after the case, nothing may have been stored."""
    monkeypatch.setenv("TELEMATICS_DATABASE_URL", shared_db)
    before = stored(shared_db)
    yield cli
    assert stored(shared_db) == before, "a refused command stored something"


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    capsys.readouterr()
    crash = ""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:
        code, crash = 1, traceback.format_exc()
    out, err = capsys.readouterr()
    return Run(code, out, err + crash)


def refused(run: Run, *words: str) -> None:
    """A non-zero exit, no traceback, and a short last line naming the problem."""
    assert run.code != 0, run
    assert "Traceback" not in run.err, run.err
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert lines, "no error message"
    last = lines[-1]
    assert len(last) < 400, f"error line of {len(last)} characters"
    for word in words:
        assert word.lower() in last.lower(), (word, last)


# -- serve / demo: refused before anything starts ------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["serve", "--port", "70000"], ["serve", "--port", "-5"], ["serve", "--port", "http"],
     ["serve", "--workers", "0"], ["serve", "--workers", "-2"], ["demo", "--vehicles", "0"],
     ["demo", "--rate", "-1"], ["demo", "--rate", "nan"], ["demo", "--port", "99999"]],
)  # fmt: skip
def test_serve_and_demo_arguments(cli: Cli, argv: list[str]) -> None:
    run = cli(*argv)
    refused(run, argv[1])
    assert run.code == 2  # a usage error, before a server or database is started


# -- vehicle add / revoke ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["X", "--fleet", "F", "--class", "tractor"], ["tractor"]),
        (["", "--fleet", "F", "--class", "bus"], ["vehicle id"]),
        ([LONG, "--fleet", "F", "--class", "bus"], ["vehicle id", "64"]),
        (["A\x00B", "--fleet", "F", "--class", "bus"], ["id", "nul"]),
        (["A,B", "--fleet", "F", "--class", "bus"], ["vehicle id", "comma"]),
        (["X", "--fleet", "", "--class", "bus"], ["fleet"]),
        (["X", "--fleet", "F\x00", "--class", "bus"], ["fleet"]),
        (["X", "--fleet", LONG, "--class", "bus"], ["fleet"]),
        (["X", "--fleet", "F", "--class", "bus", "--plate", "P\x00"], ["plate"]),
        (["X", "--fleet", "F", "--class", "bus", "--plate", LONG], ["plate"]),
        (["X", "--fleet", "F", "--class", "bus", "--plate", "P\n1"], ["plate"]),
    ],
    ids=[
        "unknown-class", "empty-id", "huge-id", "nul-id", "comma-id", "empty-fleet",
        "nul-fleet", "huge-fleet", "nul-plate", "huge-plate", "newline-plate",
    ],
)  # fmt: skip
def test_vehicle_add(db_cli: Cli, argv: list[str], words: list[str]) -> None:
    refused(db_cli("vehicle", "add", *argv), *words)


def test_vehicle_revoke_unknown(db_cli: Cli) -> None:
    refused(db_cli("vehicle", "revoke", "nope"), "nope")


# -- vehicle import: all or nothing -----------------------------------------------------

HEADER = b"id,fleet,class,plate\n"
IMPORT_CASES: dict[str, tuple[bytes | None, list[str]]] = {
    "no-header": (b"A,F,bus,P1\nB,F,bus,P2\n", ["missing columns"]),
    "wrong-columns": (b"vehicle,fleet,type\nA,F,bus\n", ["missing columns", "id"]),
    "empty-file": (b"", ["missing columns"]),
    "not-utf8": (HEADER + b"A,F,bus,\xff\xfe\n", ["utf-8"]),
    "too-few-fields": (HEADER + b"A,F,bus,P1\nB,F\n", [":3", "fields"]),
    "too-many-fields": (HEADER + b"A,F,bus,P1\nB,F,bus,P2,extra\n", [":3", "fields"]),
    "unknown-class": (HEADER + b"A,F,bus,\nB,F,spaceship,\n", [":3", "spaceship"]),
    "duplicate-in-file": (HEADER + b"A,F,bus,\nB,F,bus,\nA,F,coach,\n", [":4", "A"]),
    "nul-id": (HEADER + b"A,F,bus,\nB\x00,F,bus,\n", [":3", "vehicle id"]),
    "nul-fleet": (HEADER + b"A,F,bus,\nB,F\x00,bus,\n", [":3", "fleet"]),
    "nul-plate": (HEADER + b"A,F,bus,\nB,F,bus,P\x00\n", [":3", "plate"]),
    "huge-id": (HEADER + b"A,F,bus,\n" + LONG.encode() + b",F,bus,\n", [":3", "vehicle id"]),
    "empty-id": (HEADER + b"A,F,bus,\n,F,bus,\n", [":3", "vehicle id"]),
    "unterminated-quote": (HEADER + b'A,F,bus,\n"B,F,bus,\n', ["csv"]),
    "missing-file": (None, ["no such file"]),
}


def input_file(tmp_path: Path, name: str, content: bytes | None) -> Path:
    """``tmp_path / name`` holding ``content``; left uncreated when it is None (a missing file)."""
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", IMPORT_CASES)
def test_vehicle_import(db_cli: Cli, tmp_path: Path, case: str) -> None:
    content, words = IMPORT_CASES[case]
    path = input_file(tmp_path, "fleet.csv", content)
    run = db_cli("vehicle", "import", str(path))
    refused(run, "fleet.csv", *words)
    assert run.out == ""


def test_vehicle_import_directory(cli: Cli, tmp_path: Path) -> None:
    refused(cli("vehicle", "import", str(tmp_path)), str(tmp_path))


def test_vehicle_import_clashes_with_registered(
    cli: Cli, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMATICS_DATABASE_URL", db_url)
    assert cli("vehicle", "add", "B", "--fleet", "F", "--class", "bus").code == 0
    path = tmp_path / "fleet.csv"
    path.write_bytes(HEADER + b"A,G,bus,\nB,G,bus,\n")
    run = cli("vehicle", "import", str(path))
    refused(run, "already registered", "B")
    assert query(db_url, "SELECT count(*) FROM vehicles") == 1  # A was not stored either
    assert query(db_url, "SELECT count(*) FROM fleets") == 1  # nor its fleet G


# -- zones ------------------------------------------------------------------------------

SQUARE = [[120.6, 31.3], [120.61, 31.3], [120.61, 31.31], [120.6, 31.31], [120.6, 31.3]]
BOWTIE = [[120.6, 31.3], [120.61, 31.31], [120.61, 31.3], [120.6, 31.31], [120.6, 31.3]]


def feature(ring: list[list[float]], **props: object) -> bytes:
    import orjson

    properties = {"id": "Z1", "kind": "depot", "name": "depot", **props}
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": properties,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        ],
    }
    return orjson.dumps(doc)


ZONE_CASES: dict[str, tuple[bytes | None, list[str]]] = {
    "not-json": (b"{nope", ["not json"]),
    "not-utf8": (b'{"type": "FeatureCollection", "features": [], "x": "\xff"}', ["zones.geojson"]),
    "empty-file": (b"", ["zones.geojson"]),
    "a-list": (b"[]", ["featurecollection"]),
    "a-point": (b'{"type": "Point", "coordinates": [120.6, 31.3]}', ["featurecollection"]),
    "features-not-list": (b'{"type": "FeatureCollection", "features": 3}', ["features"]),
    "self-intersecting": (feature(BOWTIE), ["geometry"]),
    "unknown-kind": (feature(SQUARE, kind="mall"), ["kind", "mall"]),
    "bad-speed": (feature(SQUARE, kind="speed_limit", speed_limit_kmh="fast"), ["speed_limit"]),
    "nul-id": (feature(SQUARE, id="Z\u0000"), ["id"]),
    "nul-name": (feature(SQUARE, name="depot\u0000"), ["name", "nul"]),
    "huge-name": (feature(SQUARE, name=LONG), ["name"]),
    "missing-file": (None, ["no such file"]),
}


@pytest.mark.parametrize("case", ZONE_CASES)
def test_zone_import(db_cli: Cli, tmp_path: Path, case: str) -> None:
    content, words = ZONE_CASES[case]
    path = input_file(tmp_path, "zones.geojson", content)
    refused(db_cli("zone", "import", str(path)), *words)


def test_zone_import_directory_and_remove_unknown(db_cli: Cli, tmp_path: Path) -> None:
    refused(db_cli("zone", "import", str(tmp_path)), str(tmp_path))
    refused(db_cli("zone", "remove", "nope"), "nope")


# -- report -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--since", "yesterday"], ["iso 8601"]),
        (["--until", "2026-13-45"], ["iso 8601"]),
        (["--since", "2026-11-02", "--until", "2026-11-01"], ["must be after"]),
        (["--since", "2026-11-02", "--until", "2026-11-02"], ["must be after"]),
        (["--until", "0001-01-03"], ["--until"]),
        (["--since", "9999-12-31T23:59"], ["must be after"]),
        (["--format", "yaml"], ["yaml"]),
        (["--fleet", "F\x00"], ["fleet"]),
    ],
    ids=["garbage-since", "garbage-until", "reversed", "empty", "until-at-min",
         "since-far-future", "unknown-format", "nul-fleet"],
)  # fmt: skip
def test_report(cli: Cli, argv: list[str], words: list[str]) -> None:
    refused(cli("report", "interventions", *argv), *words)


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, ["escalation policy", "cannot read"]), (b"{nope", ["not valid json"]),
     (b"[]", ["json object"]), (b'{"auto_clear": "soon"}', ["escalation"])],
    ids=["missing", "not-json", "not-object", "wrong-shape"],
)  # fmt: skip
def test_report_bad_escalation_file(
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: bytes | None,
    words: list[str],
) -> None:
    path = input_file(tmp_path, "escalation.json", content)
    monkeypatch.setenv("TELEMATICS_ESCALATION_FILE", str(path))
    refused(cli("report", "interventions"), "escalation.json", *words)


# -- insurer ----------------------------------------------------------------------------

POLICY = ["--fleet", "F1", "--from", "2026-01-01", "--until", "2027-01-01", "--consent", "events"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["add", "", "--name", "X"], ["id"]),
        (["add", "pingan", "--name", " "], ["name"]),
        (["add", "ping\x00an", "--name", "X"], ["id"]),
        (["add", "pingan", "--name", "Ping\x00An"], ["name"]),
        (["add", LONG, "--name", "X"], ["id"]),
        (["key", "nope"], ["nope"]),
        (["key", "pingan", "--scope", "everything"], ["everything"]),
        (["policy", "nope", *POLICY], ["insurer"]),
        (["policy", "pingan", "--fleet", "F1", "--from", "someday", "--until", "2027-01-01",
          "--consent", "events"], ["iso 8601"]),
        (["policy", "pingan", "--fleet", "F1", "--from", "2027-01-01", "--until", "2026-01-01",
          "--consent", "events"], ["end after"]),
        (["policy", "pingan", "--fleet", "F9", "--from", "2026-01-01", "--until", "2027-01-01",
          "--consent", "events"], ["fleet"]),
        (["policy", "pingan", "--fleet", "F1", "--from", "2026-01-01", "--until", "2027-01-01",
          "--consent", "everything"], ["everything"]),
        (["policy", "pingan", *POLICY, "--number", "N\x00"], ["number"]),
        (["revoke-policy", "pol_nope"], ["pol_nope"]),
        (["disable", "nope"], ["nope"]),
    ],
    ids=["empty-id", "blank-name", "nul-id", "nul-name", "huge-id", "key-unknown",
         "key-bad-scope", "policy-unknown-insurer", "policy-garbage-date", "policy-reversed",
         "policy-unknown-fleet", "policy-bad-consent", "policy-nul-number",
         "revoke-unknown-policy", "disable-unknown"],
)  # fmt: skip
def test_insurer(db_cli: Cli, argv: list[str], words: list[str]) -> None:
    refused(db_cli("insurer", *argv), *words)


# -- user -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["add", "", "--role", "dispatcher", "--password-stdin"], ["id"]),
        (["add", "wang\x00", "--role", "dispatcher", "--password-stdin"], ["id"]),
        (["add", "wang", "--role", "king", "--password-stdin"], ["king"]),
        (["add", "wang", "--role", "dispatcher", "--fleet", "F9", "--password-stdin"], ["F9"]),
        (["token", "nope"], ["nope"]),
        (["disable", "nope"], ["nope"]),
        (["password", "nope", "--password-stdin"], ["nope"]),
    ],
    ids=["empty-id", "nul-id", "unknown-role", "unknown-fleet", "token-unknown",
         "disable-unknown", "password-unknown"],
)  # fmt: skip
def test_user(
    db_cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: list[str], words: list[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    refused(db_cli("user", *argv), *words)


# -- ml ---------------------------------------------------------------------------------


def test_ml_empty_missing_and_corrupt_models(cli: Cli, tmp_path: Path) -> None:
    run = cli
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    for where in (empty, missing):
        refused(run("ml", "evaluate", "--model-dir", str(where)), "no active model", str(where))
        refused(run("ml", "rebands", "--model-dir", str(where)), "no active", str(where))
        refused(run("ml", "activate", "sev-x", "--model-dir", str(where)), "sev-x")
    # a model directory that is a file
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(run("ml", "evaluate", "--model-dir", str(afile)), "no active model")
    refused(run("ml", "activate", "sev-x", "--model-dir", str(afile)), "sev-x")
    refused(run("ml", "activate", "../empty", "--model-dir", str(empty)), "../empty")
    # ACTIVE names a version that is not there, or whose files are garbage
    corrupt = tmp_path / "corrupt"
    (corrupt / "sev-1").mkdir(parents=True)
    (corrupt / "ACTIVE").write_text("sev-gone\n")
    refused(run("ml", "evaluate", "--model-dir", str(corrupt)), "sev-gone", "not usable")
    (corrupt / "ACTIVE").write_text("sev-1\n")
    (corrupt / "sev-1" / "model.json").write_bytes(b"{not json")
    (corrupt / "sev-1" / "model.joblib").write_bytes(b"\x80\x04garbage")
    refused(run("ml", "evaluate", "--model-dir", str(corrupt)), "sev-1", "not usable")
    (corrupt / "sev-1" / "model.json").write_text('{"format": 1, "version": "sev-1"}')
    refused(run("ml", "evaluate", "--model-dir", str(corrupt)), "sev-1", "not usable")
    assert run("ml", "list", "--model-dir", str(corrupt)).code == 0


def test_ml_train_and_dataset_arguments(cli: Cli, tmp_path: Path) -> None:
    run = cli
    models = ["--model-dir", str(tmp_path / "models")]
    refused(run("ml", "train", "--data", str(tmp_path / "missing.csv"), *models), "missing.csv")
    refused(run("ml", "train", "--data", str(tmp_path), *models), str(tmp_path))
    for name, content, word in [
        ("empty.csv", b"", "missing columns"),
        ("latin1.csv", b"kind,level\n\xe9\n", "utf-8"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        refused(run("ml", "train", "--data", str(path), *models), name, word)
    for argv, word in [
        (["--synthetic", "-5"], "--synthetic"),
        (["--synthetic", "1000", "--moderate", "-1"], "moderate"),
        (["--synthetic", "1000", "--severe", "2"], "severe"),
        (["--synthetic", "1000", "--moderate", "0.6", "--severe", "0.5"], "severe"),
        (["--synthetic", "0"], "--synthetic"),
        (["--synthetic", "lots"], "lots"),
    ]:
        refused(run("ml", "train", *argv, *models), word)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    out = ["--out", str(tmp_path / "d.csv")]
    refused(run("ml", "dataset", "--since", "yesterday", *out), "iso 8601")
    refused(run("ml", "dataset", "--since", "2026-11-02", "--until", "2026-11-01", *out),
            "must be after")  # fmt: skip
    refused(run("ml", "dataset", "--since", "2026-11-01", "--horizon-min", "-5", *out),
            "--horizon-min")  # fmt: skip
    refused(run("ml", "dataset", "--since", "2026-11-01", "--out", str(tmp_path)), str(tmp_path))
    refused(run("ml", "rebands", "--days", "-1", *models), "--days")


# -- simulate ---------------------------------------------------------------------------

TOKEN_CASES: dict[str, tuple[bytes | None, list[str]]] = {
    "missing": (None, ["no such file"]),
    "empty": (b"", ["no tokens"]),
    "one-field": (b"V1\n", [":1", "id,token"]),
    "not-utf8": (b"V1,tok\xff\n", ["utf-8"]),
    "unknown-class": (b"V1,tok,tractor\n", ["tractor"]),
    "duplicate": (b"V1,tok\nV1,tok2\n", ["V1"]),
    "nul": (b"V1,t\x00k\n", ["tokens.csv"]),
    "unterminated-quote": (b'V1,"tok\n', ["tokens.csv"]),
}


@pytest.mark.parametrize("case", TOKEN_CASES)
def test_simulate_tokens(cli: Cli, tmp_path: Path, case: str) -> None:
    content, words = TOKEN_CASES[case]
    path = input_file(tmp_path, "tokens.csv", content)
    argv = ["simulate", "--tokens", str(path), "--url", "ws://127.0.0.1:9/v1/device",
            "--duration", "0.1"]  # fmt: skip
    refused(cli(*argv), *words)


def test_simulate_tokens_directory(cli: Cli, tmp_path: Path) -> None:
    refused(cli("simulate", "--tokens", str(tmp_path)), str(tmp_path))


# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("TELEMATICS_PORT", "eighty", ["TELEMATICS_PORT", "integer"]),
        ("TELEMATICS_PORT", "-1", ["TELEMATICS_PORT"]),
        ("TELEMATICS_PORT", "70000", ["TELEMATICS_PORT"]),
        ("TELEMATICS_WORKERS", "0", ["TELEMATICS_WORKERS"]),
        ("TELEMATICS_DB_POOL_SIZE", "-4", ["TELEMATICS_DB_POOL_SIZE"]),
        ("TELEMATICS_MAX_FLUSH_ITEMS", "0", ["TELEMATICS_MAX_FLUSH_ITEMS"]),
        ("TELEMATICS_MAX_PENDING_ITEMS", "1e9", ["TELEMATICS_MAX_PENDING_ITEMS"]),
        ("TELEMATICS_STALE_AFTER_S", "soon", ["TELEMATICS_STALE_AFTER_S", "number"]),
        ("TELEMATICS_IDLE_TIMEOUT_S", "-60", ["TELEMATICS_IDLE_TIMEOUT_S"]),
        ("TELEMATICS_FLUSH_INTERVAL_MS", "nan", ["TELEMATICS_FLUSH_INTERVAL_MS"]),
        ("TELEMATICS_MAX_FRAMES_PER_S", "inf", ["TELEMATICS_MAX_FRAMES_PER_S"]),
        ("TELEMATICS_GARBAGE_LIMIT", "-1", ["TELEMATICS_GARBAGE_LIMIT"]),
        ("TELEMATICS_LOG_LEVEL", "LOUD", ["TELEMATICS_LOG_LEVEL", "LOUD"]),
        ("TELEMATICS_DATABASE_URL", "not a url", ["TELEMATICS_DATABASE_URL"]),
        ("TELEMATICS_DATABASE_URL", "mysql://db/x", ["TELEMATICS_DATABASE_URL"]),
        ("TELEMATICS_DATABASE_URL", "postgresql://127.0.0.1:1/x", ["postgresql"]),
        ("TELEMATICS_DATABASE_URL", "postgresql://h:port/x", ["TELEMATICS_DATABASE_URL"]),
    ],
)
def test_bad_settings(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: list[str]
) -> None:
    monkeypatch.setenv(name, value)
    for argv in (["vehicle", "revoke", "V1"], ["migrate"], ["zone", "list"]):
        refused(cli(*argv), *words)


def test_data_dir_is_a_file(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    afile = tmp_path / "var"
    afile.write_text("x")
    monkeypatch.delenv("TELEMATICS_DATABASE_URL")
    monkeypatch.setenv("TELEMATICS_DATA_DIR", str(afile))
    refused(cli("vehicle", "revoke", "V1"), str(afile))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TELEMATICS_WEBHOOK_POLL_S", "soon"),
        ("TELEMATICS_WEBHOOK_LEASE_S", "0"),
        ("TELEMATICS_WEBHOOK_TIMEOUT_S", "nan"),
        ("TELEMATICS_WEBHOOK_RETRY_CAP_S", "inf"),
    ],
)
def test_bad_webhook_settings_stop_serve_before_it_starts(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Read at start: in each worker's delivery task they only killed that task, and the
    insurers' webhooks silently stopped."""
    monkeypatch.setenv(name, value)
    refused(cli("serve", "--port", "0"), name)
