"""Scorers: each estimates P(the draft is right) from a drafted trace (``Policy.scorer``).

* ``FoundScorer``: the model's own P(found), for a generator too small to judge its answers;
* ``OddsScorer``: P(found) and the verifier's P(yes) as independent odds;
* ``LogisticScorer``: a logistic regression over ``rag.decision.features``, fitted on tuning
  reports (``python -m eval.fit``) and committed as JSON with what it was fitted on.

Which one a generator uses, and its operating point, is ``SCORERS`` below.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from rag.decision.features import FEATURES, combined_confidence
from rag.decision.policy import QUESTION_PMI, VERIFICATION, Scorer
from rag.errors import SettingsError
from rag.types import Trace

FITTED_DIR = Path(__file__).resolve().parent / "fitted"


@dataclass(frozen=True)
class FoundScorer:
    name: str = "P(found)"
    measures: frozenset[str] = frozenset()

    def p_right(self, trace: Trace) -> float:
        return trace.found_probability or 0.0


@dataclass(frozen=True)
class OddsScorer:
    name: str = "P(found) and verifier P(yes) as odds"
    measures: frozenset[str] = frozenset({VERIFICATION})

    def p_right(self, trace: Trace) -> float:
        return combined_confidence(trace.found_probability or 0.0, trace.verification or 0.0)


@dataclass(frozen=True)
class LogisticScorer:
    """P(right) = sigmoid(bias + sum of weight * feature), on the raw features (the fit
    standardizes them and folds the scales back into the weights)."""

    weights: dict[str, float]
    bias: float
    # What it was fitted on and how: reports, their counts, the generator and the settings.
    fitted: dict[str, object] = field(default_factory=dict)
    name: str = "fitted"

    @property
    def measures(self) -> frozenset[str]:
        needs = {"odds_logit": VERIFICATION, "verification_logit": VERIFICATION,
                 "pmi_mean": QUESTION_PMI, "pmi_min": QUESTION_PMI}
        return frozenset(needs[f] for f in self.weights if f in needs)

    def p_right(self, trace: Trace) -> float:
        z = self.bias + sum(w * FEATURES[f](trace) for f, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def save(self, path: Path) -> None:
        data = {"weights": self.weights, "bias": self.bias, "fitted": self.fitted}
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> LogisticScorer:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"cannot read the fitted scorer {path}: {exc}") from None
        unknown = set(data["weights"]) - set(FEATURES)
        if unknown:
            raise SettingsError(f"{path} weighs unknown features {sorted(unknown)}")
        return cls(weights=data["weights"], bias=data["bias"], fitted=data.get("fitted", {}),
                   name=f"fitted:{path.stem}")


@dataclass(frozen=True)
class Choice:
    """A generator's scorer and its default operating point, chosen on tuning data."""

    scorer: Scorer
    min_confidence: float


SCORERS: dict[str, Choice] = {
    # Too small to judge its own answers: no verification, no confidence floor.
    "qwen2.5-coder-0.5b-instruct": Choice(FoundScorer(), 0.0),
}
# Any other GGUF file (RAG_MODEL_PATH): the rule that assumes nothing fitted to the model.
FALLBACK = Choice(OddsScorer(), 0.9)


@cache
def choice_for(generator: str) -> Choice:
    """The generator's fitted scorer and operating point (rag/decision/fitted/<generator>.json,
    written by ``python -m eval.fit fit``), else its entry in SCORERS, else the fallback."""
    path = FITTED_DIR / f"{generator}.json"
    if path.is_file():
        scorer = LogisticScorer.load(path)
        return Choice(scorer, float(scorer.fitted["min_confidence"]))  # type: ignore[arg-type]
    return SCORERS.get(generator, FALLBACK)
