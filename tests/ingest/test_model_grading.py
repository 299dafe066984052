"""A trained model grading on the hot path of a real server: what it stores, where it shows,
switching versions without a restart, and the rules taking over when it goes away."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ml.model import SeverityModel
from ml.registry import ACTIVE
from tests.helpers import RunningServer, Unit, add_vehicle, event
from tests.models import register, server_grading_by, small_model


@pytest.fixture(scope="module")
def model() -> SeverityModel:
    return small_model()


def _stats(server: RunningServer) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http_url}/v1/stats", timeout=5) as resp:
        stats: dict[str, Any] = json.load(resp)
        return stats


async def _stats_async(server: RunningServer) -> dict[str, Any]:
    return await asyncio.to_thread(_stats, server)


async def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_model_grades_alarms_and_they_carry_its_explanation(
    db_url: str, db: asyncpg.Connection, tmp_path: Path, model: SeverityModel
) -> None:
    async with server_grading_by(db_url, tmp_path / "models", model) as (server, version):
        token = await add_vehicle(db_url, "SU-M1", "hazmat")
        unit = await Unit.connect(server.ws_url, token)
        await unit.send(event(1, "fatigue", 2, speed_kmh=96.0))
        await unit.send(event(2, "collision", None, speed_kmh=70.0))
        kinds = set()
        for _ in range(2):  # each goes out before its commit; one ack may cover both
            frame = await unit.recv_until(lambda f: f["type"] == "intervention")
            kinds.add(frame["cause"]["kind"])
        assert kinds == {"fatigue", "collision"}
        await unit.ack_reaching(2)
        rows = {
            r["kind"]: r
            for r in await db.fetch(
                "SELECT kind, severity, reason, probability, model_version, factors FROM alarms"
            )
        }
        assert rows["collision"]["severity"] == "severe"  # the floor holds under the model
        for row in rows.values():
            assert row["model_version"] == version
            assert 0.0 <= row["probability"] <= 1.0
            assert row["reason"]  # the dispatcher's words are kept
            assert all("odds" in f for f in row["factors"] or [])
        # what insurers read in their feed (sql/011 alarm_feed_snapshot)
        changes = await db.fetch("SELECT alarm FROM alarm_changes WHERE change = 'opened'")
        assert len(changes) == 2
        for change in changes:
            alarm = json.loads(change["alarm"])
            assert alarm["model_version"] == version and alarm["probability"] is not None
            assert alarm["factors"] == list(rows[alarm["kind"]]["factors"] or []) or (
                alarm["factors"] is None and not rows[alarm["kind"]]["factors"]
            )
        stats = (await _stats_async(server))["grading"]
        assert stats["grader"] == "model" and stats["model_version"] == version
        assert stats["alarms_graded"] >= 2 and stats["batches"] <= stats["alarms_graded"]
        await unit.close()


async def test_versions_switch_without_a_restart_and_the_rules_take_over(
    db_url: str, db: asyncpg.Connection, tmp_path: Path, model: SeverityModel
) -> None:
    directory = tmp_path / "models"
    async with server_grading_by(db_url, directory, model) as (server, first):
        server.hub.grading.poll_s = 0.05
        assert server.hub.grading.model_version == first
        token = await add_vehicle(db_url, "SU-M2", "coach")
        unit = await Unit.connect(server.ws_url, token)
        second = register(directory, small_model(seed=23), seed=23)
        await _until(lambda: server.hub.grading.model_version == second)
        await unit.send(event(1, "phone_call", 1))
        await unit.committed_intervention()
        (directory / ACTIVE).unlink()
        await _until(lambda: not server.hub.grading.batched)
        await unit.send(event(2, "smoking", 1))
        await unit.committed_intervention()
        stored = await db.fetch("SELECT kind, model_version, probability FROM alarms")
        rows = {r["kind"]: r for r in stored}
        assert rows["phone_call"]["model_version"] == second
        assert rows["smoking"]["model_version"] is None and rows["smoking"]["probability"] is None
        stats = (await _stats_async(server))["grading"]
        assert stats["grader"] == "rules" and "no active severity model" in stats["fallback_reason"]
        await unit.close()
