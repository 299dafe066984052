"""The trained model behind the risk engine's :class:`Grader` protocol.

Severity comes from the model's probability bands, with the rules' hard floors kept:
crash, rollover and panic are severe whatever the model says, and a severity a detector
measured (a tire at 100 °C) is never talked down. The reason text stays the rules' (what
happened and in what context, for the dispatcher); the model adds its probability, its
version and the factors that raised the probability most, in words.

A kind the model was never trained on (``RULES_ONLY_KINDS``, e.g. ``unit_silent``) is
graded by the rules alone: the trees would read it as a missing kind and answer for an
average alarm. Such a grade carries no probability and no model version, so the alarm
shows it was graded by the rules; ``/v1/stats`` lists these kinds under ``grading``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ml.features import RULES_ONLY_KINDS, feature_rows, read_row, top_factors
from ml.model import SEVERITIES
from ml.registry import LoadedModel
from telematics.classify.context import Graded, GradingInput, RulesGrader, floored
from telematics.classify.risk_policy import RiskPolicy

#: Factors stored with each model-graded alarm.
FACTORS = 3


class ModelGrader:
    def __init__(self, loaded: LoadedModel, policy: RiskPolicy, factors: int = FACTORS) -> None:
        self.loaded = loaded
        self.compiled = loaded.model.compile()
        self.rules = RulesGrader(policy)
        self.always_severe = policy.severity.always_severe
        self.factors = factors

    @property
    def version(self) -> str:
        return self.loaded.version

    def grade_many(self, inputs: Sequence[GradingInput]) -> list[Graded]:
        """One walk of the trees for the whole batch: probabilities and explanations.
        Features in plain Python (``feature_rows``): a batch is one to eight alarms, and
        a numpy call per feature cost more than the features themselves."""
        if not inputs:
            return []
        if any(x.kind in RULES_ONLY_KINDS for x in inputs):
            known = [x for x in inputs if x.kind not in RULES_ONLY_KINDS]
            by_model = iter(self.grade_many(known))
            return [
                self.rules.grade_one(x) if x.kind in RULES_ONLY_KINDS else next(by_model)
                for x in inputs
            ]
        model = self.loaded.model
        rows = [read_row(x) for x in inputs]
        proba, contributions = model.assess(feature_rows(rows), self.compiled)
        factors = top_factors(contributions, rows, self.factors)
        codes = model.bands.codes(proba)
        out: list[Graded] = []
        for x, p, code, words in zip(inputs, proba.tolist(), codes.tolist(), factors, strict=True):
            rules = self.rules.grade_one(x)  # the reason text; its severity is not used
            severity = floored(SEVERITIES[code], x, self.always_severe)
            out.append(Graded(severity, rules.reason, rules.score, p, self.version, tuple(words)))
        return out
