"""The model behind the Grader protocol, micro-batching, hot swap and every fallback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml.features import KINDS, RULES_ONLY_KINDS
from ml.grader import ModelGrader
from ml.model import SeverityModel
from ml.registry import ACTIVE, MODEL_FILE, LoadedModel, activate_version, try_load
from ml.synth import generate
from telematics.classify.context import Graded, GradingInput, RulesGrader
from telematics.classify.risk_policy import GRADED_KINDS, load_policy
from telematics.classify.serving import GradingService
from telematics.errors import UsageError
from tests.models import register, small_model

POLICY = load_policy()
NIGHT = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)  # 02:00 in Suzhou


def x(kind: str = "fatigue", level: int | None = 2, **kw: Any) -> GradingInput:
    base: dict[str, Any] = {
        "kind": kind,
        "level": level,
        "ts": NIGHT,
        "speed_kmh": 95.0,
        "speed_limit_kmh": 80.0,
        "vehicle_class": "hazmat",
        "load": "full",
        "night": True,
        "zone_kinds": frozenset(),
        "recurrence": 3,
        "continuous_driving_s": 4 * 3600.0,
        "driving_today_s": 8 * 3600.0,
        "recent_alarms": 5,
        "driver_alarms": 12,
        "driver_hours": 3.0,
    }
    return GradingInput(**(base | kw))


@pytest.fixture(scope="module")
def model() -> SeverityModel:
    return small_model()


@pytest.fixture
def models(tmp_path: Path, model: SeverityModel) -> tuple[Path, str]:
    directory = tmp_path / "models"
    return directory, register(directory, model)


def loaded(models: tuple[Path, str]) -> LoadedModel:
    result = try_load(*models)
    assert isinstance(result, LoadedModel), result
    return result


# ---- ModelGrader ------------------------------------------------------------------


def test_a_kind_the_model_never_learnt_is_graded_by_the_rules(models: tuple[Path, str]) -> None:
    """unit_silent is not in the model's vocabulary: the rules grade it, in its place in
    the batch, with no probability or model version to pass for the model's; the model
    still grades the rest, and /v1/stats lists the kind."""
    inputs = [x("fatigue"), x("unit_silent", None, derived=True, base="severe"), x("yawning", 1)]
    graded = ModelGrader(loaded(models), POLICY).grade_many(inputs)
    assert graded[1] == RulesGrader(POLICY).grade_one(inputs[1])
    assert graded[1].probability is None and graded[1].model_version is None
    assert all(g.model_version is not None for g in (graded[0], graded[2]))
    assert graded[0] == ModelGrader(loaded(models), POLICY).grade_many(inputs[:1])[0]


def test_the_kind_codes_of_registered_models_never_move() -> None:
    """A new kind sorted in among the old ones would shift their codes under every model
    already trained: the vocabulary is appended to, and new kinds left to the rules."""
    assert KINDS[:3] == ("blind_spot_left", "blind_spot_rear", "blind_spot_right")
    assert KINDS.index("yawning") == 33 and len(KINDS) == 34
    assert RULES_ONLY_KINDS == frozenset({"unit_silent"})
    assert set(KINDS) | RULES_ONLY_KINDS == GRADED_KINDS


def test_model_grades_by_its_bands_and_explains(models: tuple[Path, str]) -> None:
    m = loaded(models)
    inputs = generate(400, seed=5).columns.to_inputs()
    graded = ModelGrader(m, POLICY).grade_many(inputs)
    proba = m.predict_proba(inputs)
    assert [g.probability for g in graded] == pytest.approx(proba.tolist(), rel=1e-6)
    bands = m.severity_bands(proba)
    rules = RulesGrader(POLICY)
    for x_, g, band in zip(inputs, graded, bands, strict=True):
        assert g.model_version == m.version
        assert g.reason == rules.grade_one(x_).reason  # the dispatcher's words stay
        floor = "severe" if x_.kind in POLICY.severity.always_severe else x_.base
        assert g.severity == band or g.severity == floor
        assert len(g.factors) <= 3
    explained = [g for g in graded if g.factors]
    assert len(explained) > len(graded) // 2
    assert all("odds" in f for g in explained for f in g.factors)


def test_floors_hold_whatever_the_model_says(models: tuple[Path, str]) -> None:
    grader = ModelGrader(loaded(models), POLICY)
    calm = {"speed_kmh": 5.0, "night": False, "vehicle_class": "bus", "load": "empty",
            "recurrence": 1, "recent_alarms": 1, "driver_alarms": 0,
            "continuous_driving_s": 0.0, "zone_kinds": frozenset({"depot"})}  # fmt: skip
    crash, panic, tire = grader.grade_many(
        [
            x("collision", None, **calm),
            x("panic_button", None, **calm),
            x("tire_temp_high", None, base="severe", derived=True, **calm),
        ]
    )
    assert (crash.severity, panic.severity, tire.severity) == ("severe",) * 3
    assert crash.probability is not None and crash.model_version is not None


# ---- GradingService ---------------------------------------------------------------


async def test_rules_grade_inline_when_there_is_no_model(tmp_path: Path) -> None:
    service = GradingService(POLICY, tmp_path / "empty")
    await service.load()
    assert not service.batched
    assert "no active severity model" in service.snapshot()["fallback_reason"]
    [graded] = await service.grade([x()])
    assert graded.probability is None and graded.model_version is None
    assert service.snapshot()["alarms_graded"] == 1 and service.snapshot()["batches"] == 0
    assert graded.severity == RulesGrader(POLICY).grade_one(x()).severity


GradeMany = Callable[[Sequence[GradingInput]], list[Graded]]


async def counting_calls(models: tuple[Path, str]) -> tuple[GradingService, list[int], GradeMany]:
    """A service grading by the model, each model call's size noted in the list; and the
    model's own ``grade_many``."""
    service = GradingService(POLICY, models[0])
    await service.load()
    calls: list[int] = []
    real = service.grader.grade_many

    def counting(inputs: Sequence[GradingInput]) -> list[Graded]:
        calls.append(len(inputs))
        return real(inputs)

    service.grader.grade_many = counting  # type: ignore[method-assign]
    return service, calls, real


async def test_one_model_call_per_loop_turn(models: tuple[Path, str]) -> None:
    service, calls, real = await counting_calls(models)
    assert service.batched and service.model_version == models[1]
    frames = [[x(recurrence=2)], [x("phone_call", 1), x("smoking", 1)], [x("collision", None)]]
    results = await asyncio.gather(*(service.grade(f) for f in frames))
    assert calls == [4]  # three frames, one call
    for frame, graded in zip(frames, results, strict=True):
        assert graded == real(frame)  # each frame gets its own grades, in order
    stats = service.snapshot()
    assert stats["grader"] == "model" and stats["batches"] == 1 and stats["alarms_graded"] == 4
    assert stats["rules_only_kinds"] == ["unit_silent"]  # what this model cannot grade
    assert stats["model_batch_ms"]["max"] > 0 and stats["model_batch_cpu_ms"]["max"] > 0
    assert len(service.wait_ms) == 3  # each frame's wait for its call (model_wait_ms)
    # A turn with more alarms than max_batch: whole frames per call, in the same turn
    # while the turn's time budget lasts, the rest in the next turn.
    calls.clear()
    service.max_batch = 3
    turns: list[int] = []
    grade_waiting = service._grade_waiting

    def one_turn() -> None:
        turns.append(len(calls))
        grade_waiting()

    service._grade_waiting = one_turn  # type: ignore[method-assign]
    burst = [frames[1], frames[1], frames[2]]
    results = await asyncio.gather(*(service.grade(f) for f in burst))
    assert calls == [2, 3] and turns == [0]  # both calls in one turn
    assert results == [real(frames[1]), real(frames[1]), real(frames[2])]
    calls.clear()
    turns.clear()
    service.turn_budget_s = 0.0  # spent after each call: one call per turn
    results = await asyncio.gather(*(service.grade(f) for f in burst))
    assert calls == [2, 3] and turns == [0, 1]
    assert results == [real(frames[1]), real(frames[1]), real(frames[2])]


async def test_grades_are_handed_over_in_the_turn_of_the_model_call(
    models: tuple[Path, str],
) -> None:
    """``grade_later``'s callback runs inside the model call's turn: a frame's
    interventions go out then, not a turn later when a future's waiter wakes."""
    service = GradingService(POLICY, models[0])
    await service.load()
    events: list[str] = []
    grade_waiting = service._grade_waiting

    def model_turn() -> None:
        events.append("model call")
        grade_waiting()
        events.append("turn over")

    service._grade_waiting = model_turn  # type: ignore[method-assign]
    got: list[list[Graded]] = []

    def done(grades: list[Graded]) -> None:
        events.append("graded")
        got.append(grades)

    service.grade_later([x()], done, print)
    assert events == []  # queued for the loop turn's micro-batch
    await asyncio.sleep(0)
    assert events == ["model call", "graded", "turn over"]
    assert got == [service.grader.grade_many([x()])]


async def test_alarms_that_waited_max_wait_are_graded_before_the_turn_ends(
    models: tuple[Path, str],
) -> None:
    """``grade_due`` (after every frame) grades what is waiting once the oldest alarm has
    waited ``max_wait_s``, all of it in one call; before that it leaves it to the turn."""
    service, calls, real = await counting_calls(models)
    got: list[list[Graded]] = []
    service.max_wait_s = 3600.0
    service.grade_later([x()], got.append, print)
    service.grade_due()
    assert calls == [] and got == []  # not waited long enough: left to the turn's end
    service.grade_later([x("smoking", 1)], got.append, print)
    service.max_wait_s = 0.0
    service.grade_due()
    assert calls == [2]  # both frames, one call, before the turn ended
    assert got == [real([x()]), real([x("smoking", 1)])]
    await asyncio.sleep(0)  # the turn's own call finds nothing left
    service.grade_due()  # nothing waiting: nothing to do
    assert calls == [2]


async def test_hot_swap_and_back_to_the_rules(
    models: tuple[Path, str], model: SeverityModel, caplog: pytest.LogCaptureFixture
) -> None:
    directory, first = models
    service = GradingService(POLICY, directory)
    await service.load()
    assert service.model_version == first
    second = register(directory, small_model(seed=22), seed=22)
    await service.load()
    assert service.model_version == second  # no restart
    [graded] = await service.grade([x()])
    assert graded.model_version == second
    (directory / ACTIVE).unlink()
    with caplog.at_level(logging.WARNING):
        await service.load()
    assert service.snapshot()["grader"] == "rules"  # (not narrowed by the asserts above)
    assert service.snapshot()["model_version"] is None
    assert "grading by the rules" in caplog.text
    activate_version(directory, first)
    await service.load()
    assert service.model_version == first


async def test_a_damaged_model_leaves_the_rules_grading(models: tuple[Path, str]) -> None:
    directory, version = models
    (directory / version / MODEL_FILE).write_bytes(b"not a pickle")
    service = GradingService(POLICY, directory)
    await service.load()
    assert not service.batched
    assert "SHA-256" in service.snapshot()["fallback_reason"]


async def test_a_model_failing_mid_batch_costs_no_alarm(models: tuple[Path, str]) -> None:
    service = GradingService(POLICY, models[0])
    await service.load()

    def broken(inputs: Sequence[GradingInput]) -> list[Graded]:
        raise FloatingPointError("boom")

    service.grader.grade_many = broken  # type: ignore[method-assign]
    graded = await service.grade([x(), x("collision", None)])
    assert [g.severity for g in graded] == [
        RulesGrader(POLICY).grade_one(i).severity for i in (x(), x("collision", None))
    ]
    stats = service.snapshot()
    assert stats["grader"] == "rules" and stats["model_failures"] == 1
    assert "failed while grading" in stats["fallback_reason"]
    # the same version is not retried until another one is activated
    await service.load()
    assert not service.batched


def test_served_grades_are_the_models_own(models: tuple[Path, str]) -> None:
    """The fast path gives the offline model's probabilities and explanations."""
    m = loaded(models)
    inputs = generate(50, seed=9).columns.to_inputs()
    graded = ModelGrader(m, POLICY).grade_many(inputs)
    served = np.array([g.probability for g in graded], np.float64)
    np.testing.assert_allclose(served, m.model.predict_proba(inputs), rtol=1e-9)
    assert [list(g.factors) for g in graded] == m.model.explain(inputs)


async def test_when_even_the_rules_fail_every_waiter_hears_of_it(
    models: tuple[Path, str],
) -> None:
    service = GradingService(POLICY, models[0])
    await service.load()
    with pytest.raises(UsageError, match="no severity for kind"):
        await asyncio.wait_for(service.grade([x("no_such_kind", None)]), timeout=5)
