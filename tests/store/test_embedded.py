"""The embedded PostgreSQL is started with the settings the server needs beside it."""

from __future__ import annotations

from pathlib import Path

from telematics.store.database import EMBEDDED_SETTINGS, start_embedded


def test_the_embedded_server_spreads_autovacuum_out(tmp_path: Path) -> None:
    server = start_embedded(tmp_path, cleanup_mode="delete")
    try:
        for name, value in EMBEDDED_SETTINGS.items():
            assert value in server.psql(f"SHOW {name};")
        assert "10ms" in server.psql("SHOW autovacuum_vacuum_cost_delay;")
        assert "50" in server.psql("SHOW autovacuum_vacuum_cost_limit;")
    finally:
        server.cleanup()
