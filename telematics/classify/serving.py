"""The classify stage's shell in a server: which grader is live, and micro-batches.

Without a usable trained model the rules grade, inline (a few microseconds of Python per
alarm). With one, every frame that found alarms hands them over and waits; once per
event-loop turn all the alarms handed over in that turn, from every connection, are
graded in one vectorised model call (``ModelGrader.grade_many``), up to ``max_batch``
alarms a call (more wait for the next turn). A loop turn is what the loop gathered from
the sockets at once, so the wait costs little on a quiet loop. On a loop that fell
behind, one turn reads hundreds of frames (tens of ms), and an alarm read early in it
would wait for all of them: so the connections call :meth:`GradingService.grade_due`
after every frame, which grades what is waiting once the oldest alarm has waited
``max_wait_s``. Each frame's continuation runs right after the call that graded it
(``grade_later``), so its interventions leave then. ``snapshot()`` reports each frame's
wait for its call (``model_wait_ms``) besides the call's own time: the latency the
batching adds.

The poller watches the model registry's ``ACTIVE`` pointer: a newly activated version is
loaded off the loop and swapped in without a restart; a version that cannot be used (or
none at all) leaves the rules grading, and ``snapshot()`` (in ``/v1/stats``) says why.
A model that fails while grading is dropped for the rules too, logged, until the next
version is activated: a broken model must not cost a single alarm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telematics.classify.context import Graded, Grader, GradingInput, RulesGrader
from telematics.classify.risk_policy import RiskPolicy
from telematics.errors import ConfigError
from telematics.spread import spread

if TYPE_CHECKING:
    from ml.grader import ModelGrader

log = logging.getLogger(__name__)

#: Told the grades (in the turn they are made) / that even the rules failed (a bug).
Done = Callable[[list[Graded]], None]
Failed = Callable[[BaseException], None]
#: A frame's alarms, told their grades by ``done`` (or ``failed``); queued at perf_counter().
_Waiting = tuple[Sequence[GradingInput], Done, Failed, float]


class GradingService:
    poll_s = 5.0
    #: Alarms per model call: 8 take ~0.7 ms of CPU here, 32 up to 4 ms in a busy server.
    max_batch = 8
    #: A burst is graded in several calls in the same loop turn until this much of the
    #: thread's CPU is spent; the rest waits for the next turn. One call per turn made the
    #: k-th call of a burst wait k turns (tens of ms each under load) before its
    #: interventions went out. CPU, not wall time: on a busy machine a call of 1 ms of CPU
    #: took up to 14 ms of wall (waiting for a core or the GIL), so a wall budget graded
    #: one call a turn just when the backlog grew, and interventions waited seconds.
    turn_budget_s = 0.004
    #: The longest a frame's alarms wait for others to join their call while the loop
    #: reads on. In (c) without it: wait p50 0.5 ms, but p99 16–37 ms and max 48–84 ms
    #: (the turns after a stall), all of it in event → intervention. Under load ~4 % of
    #: frames bring an alarm, so calls stayed at 1–2 alarms at the median either way.
    max_wait_s = 0.002

    def __init__(self, policy: RiskPolicy, model_dir: Path | None) -> None:
        self.policy = policy
        self.model_dir = model_dir
        self.rules = RulesGrader(policy)
        self.grader: Grader = self.rules
        self.model_version: str | None = None
        self.fallback = "no model directory" if model_dir is None else "not loaded yet"
        self._seen: str | None = None  # the ACTIVE version last tried, usable or not
        self._looked = False
        self._waiting: deque[_Waiting] = deque()
        self._scheduled = False
        self.batches = 0
        self.alarms_graded = 0
        self.model_failures = 0
        # Recent model batches: wall time (what the loop waited, including any wait for
        # a CPU or the GIL on a busy machine) and this thread's CPU time (the model's cost).
        self.batch_ms: deque[float] = deque(maxlen=2000)
        self.batch_cpu_ms: deque[float] = deque(maxlen=2000)
        self.batch_sizes: deque[int] = deque(maxlen=2000)
        self.wait_ms: deque[float] = deque(maxlen=2000)  # per frame: queued → its call

    @property
    def batched(self) -> bool:
        return self.grader is not self.rules

    # -- grading -------------------------------------------------------------------------

    def grade_now(self, inputs: Sequence[GradingInput]) -> list[Graded] | None:
        """Grades for ``inputs`` at once if the rules grade; None if a model does (then
        :meth:`grade_later` or :meth:`grade`: the alarms join the turn's micro-batch)."""
        if self.batched:
            return None
        self.alarms_graded += len(inputs)
        return self.rules.grade_many(inputs)

    def grade_later(self, inputs: Sequence[GradingInput], done: Done, failed: Failed) -> None:
        """Queue ``inputs`` for the next model call: ``done`` gets their grades right
        after it, in the same loop turn (a future would wake its waiter a turn later,
        and a frame's interventions would wait for it)."""
        self._waiting.append((inputs, done, failed, time.perf_counter()))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._grade_waiting)

    async def grade(self, inputs: Sequence[GradingInput]) -> list[Graded]:
        """Grades for ``inputs``, in order: at once by the rules, else in this loop
        turn's micro-batch."""
        graded = self.grade_now(inputs)
        if graded is not None:
            return graded
        future: asyncio.Future[list[Graded]] = asyncio.get_running_loop().create_future()

        def done(grades: list[Graded]) -> None:
            if not future.done():  # a waiter that was cancelled meanwhile
                future.set_result(grades)

        def failed(exc: BaseException) -> None:
            if not future.done():
                future.set_exception(exc)

        self.grade_later(inputs, done, failed)
        return await future

    def grade_due(self) -> None:
        """Grade what is waiting now if its oldest alarm has waited ``max_wait_s``
        (called after each frame; the loop turn's end grades the rest)."""
        queue = self._waiting
        if queue and time.perf_counter() - queue[0][3] >= self.max_wait_s:
            self._grade_waiting()

    def _grade_waiting(self) -> None:
        """Grade the frames waiting, in calls of up to ``max_batch`` alarms (at least one
        frame each), until none are left or ``turn_budget_s`` is spent; what is left
        goes in the next loop turn, so a burst never holds the loop long."""
        deadline = time.thread_time() + self.turn_budget_s
        queue = self._waiting
        while queue:
            self._grade_call()
            if queue and time.thread_time() >= deadline:
                asyncio.get_running_loop().call_soon(self._grade_waiting)
                return
        self._scheduled = False

    def _grade_call(self) -> None:
        """One model call: the next waiting frames, up to ``max_batch`` alarms."""
        queue = self._waiting
        waiting: list[_Waiting] = []
        count = 0
        while queue and (not waiting or count + len(queue[0][0]) <= self.max_batch):
            waiting.append(queue.popleft())
            count += len(waiting[-1][0])
        flat = [x for inputs, _, _, _ in waiting for x in inputs]
        now = time.perf_counter()
        self.wait_ms.extend((now - queued) * 1000 for _, _, _, queued in waiting)
        try:
            graded = self._grade_batch(flat)
        except Exception as exc:  # the rules failed too (a bug): every waiter hears of it
            for _, _, failed, _ in waiting:
                failed(exc)
            return
        at = 0
        for inputs, done, _, _ in waiting:
            try:
                done(graded[at : at + len(inputs)])
            except Exception:  # one waiter's bug must not cost the others their grades
                log.exception("finishing a graded frame failed")
            at += len(inputs)

    def _grade_batch(self, flat: list[GradingInput]) -> list[Graded]:
        grader = self.grader
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            graded = grader.grade_many(flat)
        except Exception:  # any failure of a model: grade by the rules, lose nothing
            log.exception("severity model %s failed; grading by the rules", grader.version)
            self.model_failures += 1
            self._use_rules(f"model {grader.version} failed while grading (see the log)")
            graded = self.rules.grade_many(flat)
        else:
            self.batch_ms.append((time.perf_counter() - started) * 1000)
            self.batch_cpu_ms.append((time.thread_time() - cpu_started) * 1000)
            self.batch_sizes.append(len(flat))
        self.batches += 1
        self.alarms_graded += len(flat)
        return graded

    # -- which grader ----------------------------------------------------------------

    async def load(self) -> None:
        """Use the registry's active model if it is new and usable (loaded off the loop)."""
        if self.model_dir is None:
            return
        from ml.registry import active_version  # the rules alone need no scikit-learn

        version = active_version(self.model_dir)
        if self._looked and version == self._seen:
            return
        self._looked, self._seen = True, version
        if version is None:
            self._use_rules(f"no active severity model in {self.model_dir}")
            return
        grader = await asyncio.to_thread(_load, self.model_dir, version, self.policy)
        if isinstance(grader, str):
            self._use_rules(grader)
        else:
            self.grader = grader
            self.model_version = grader.version
            self.fallback = ""
            log.info("grading by severity model %s", grader.version)

    def _use_rules(self, why: str) -> None:
        if self.grader is not self.rules or why != self.fallback:
            log.warning("grading by the rules (policy %s): %s", self.policy.version, why)
        self.grader = self.rules
        self.model_version = None
        self.fallback = why

    async def run_poller(self) -> None:
        """Switch models when ``ACTIVE`` changes (runs forever)."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.load()
            except Exception:  # the poller must outlive any surprise in a model file
                log.exception("model poll failed; keeping the current grader")

    def snapshot(self) -> dict[str, Any]:
        rules_only: list[str] = []
        if self.batched:
            from ml.features import RULES_ONLY_KINDS  # loaded with the model already

            rules_only = sorted(RULES_ONLY_KINDS)
        return {
            "grader": "model" if self.batched else "rules",
            "model_version": self.model_version,
            # kinds the model was not trained on: graded by the rules even so
            "rules_only_kinds": rules_only,
            "rules_version": self.policy.version,
            "fallback_reason": self.fallback or None,
            "batches": self.batches,
            "alarms_graded": self.alarms_graded,
            "model_failures": self.model_failures,
            "model_batch_ms": spread(self.batch_ms, digits=3),
            "model_batch_cpu_ms": spread(self.batch_cpu_ms, digits=3),
            "model_batch_size": spread(self.batch_sizes),
            "model_wait_ms": spread(self.wait_ms, digits=3),
        }


def _load(model_dir: Path, version: str, policy: RiskPolicy) -> ModelGrader | str:
    """Load and compile a version (on a worker thread: both take a while)."""
    from ml.grader import ModelGrader
    from ml.registry import try_load

    loaded = try_load(model_dir, version)
    if isinstance(loaded, str):
        return loaded
    try:
        return ModelGrader(loaded, policy)
    except ConfigError as exc:  # e.g. trees too deep to compile
        return f"model {version} cannot be served: {exc}"
