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
from typing import Any

import numpy as np

from rag.decision.features import FEATURES, combined_confidence, logit
from rag.decision.policy import CANDIDATE_GATES, QUESTION_PMI, VERIFICATION, Policy, Scorer
from rag.errors import SettingsError
from rag.types import CandidateTrace, Trace

FITTED_DIR = Path(__file__).resolve().parent / "fitted"


@dataclass(frozen=True)
class FoundScorer:
    name: str = "P(found)"
    measures: frozenset[str] = frozenset()
    ranks_candidates: bool = False  # P(found) is one number per question

    def score(self, trace: Trace, candidate: CandidateTrace) -> float:
        return trace.found_probability or 0.0

    def p_right(self, trace: Trace, candidate: CandidateTrace) -> float:
        return self.score(trace, candidate)


@dataclass(frozen=True)
class OddsScorer:
    name: str = "P(found) and verifier P(yes) as odds"
    measures: frozenset[str] = frozenset({VERIFICATION})
    ranks_candidates: bool = True

    def score(self, trace: Trace, candidate: CandidateTrace) -> float:
        return combined_confidence(trace.found_probability or 0.0, candidate.verification or 0.0)

    def p_right(self, trace: Trace, candidate: CandidateTrace) -> float:
        return self.score(trace, candidate)


@dataclass(frozen=True)
class LogisticScorer:
    """A score sigmoid(bias + sum of weight * feature) on the raw features (the fit
    standardizes them and folds the scales back into the weights) ranks the candidates; its
    calibration (isotonic or Platt, fitted out of fold) turns the score into P(right)."""

    weights: dict[str, float]
    bias: float
    calibration: dict[str, Any] | None = None  # None: the score is P(right)
    # What it was fitted on and how: reports, their counts, the generator and the settings.
    fitted: dict[str, object] = field(default_factory=dict)
    name: str = "fitted"
    ranks_candidates: bool = True

    @property
    def measures(self) -> frozenset[str]:
        needs = {"odds_logit": VERIFICATION, "verification_logit": VERIFICATION,
                 "pmi_mean": QUESTION_PMI, "pmi_min": QUESTION_PMI}
        return frozenset(needs[f] for f in self.weights if f in needs)

    def score(self, trace: Trace, candidate: CandidateTrace) -> float:
        z = self.bias + sum(w * FEATURES[f](trace, candidate) for f, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def p_right(self, trace: Trace, candidate: CandidateTrace) -> float:
        raw = self.score(trace, candidate)
        return raw if self.calibration is None else calibrated(self.calibration, raw)

    def save(self, path: Path) -> None:
        data = {"weights": self.weights, "bias": self.bias, "calibration": self.calibration,
                "fitted": self.fitted}
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
        return cls(weights=data["weights"], bias=data["bias"],
                   calibration=data.get("calibration"), fitted=data.get("fitted", {}),
                   name=f"fitted:{path.stem}")


def calibrated(calibration: dict[str, Any], raw: float) -> float:
    """P(right) for a raw score: isotonic (a step function through fitted points, linear
    between them) or Platt (a logistic of the score's log-odds)."""
    if calibration["kind"] == "isotonic":
        return float(np.interp(raw, calibration["x"], calibration["y"]))
    if calibration["kind"] == "platt":
        z = calibration["a"] * logit(raw) + calibration["b"]
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
    raise SettingsError(f"unknown calibration {calibration['kind']!r}")


@dataclass(frozen=True)
class Choice:
    """A generator's scorer, its default operating point and the candidate gates it decides
    behind, chosen on tuning data."""

    scorer: Scorer
    min_confidence: float
    candidate_gates: tuple[str, ...] = tuple(g.name for g in CANDIDATE_GATES)

    def policy(self, min_relevance: float, min_confidence: float | None = None) -> Policy:
        """The decision: this scorer behind these gates, at ``min_confidence`` (default: the
        chosen operating point)."""
        gates = tuple(g for g in CANDIDATE_GATES if g.name in self.candidate_gates)
        floor = self.min_confidence if min_confidence is None else min_confidence
        return Policy(self.scorer, min_relevance, floor, candidate_gates=gates)


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
        fitted = scorer.fitted
        gates = fitted.get("candidate_gates", Choice.candidate_gates)
        return Choice(scorer, float(fitted["min_confidence"]),  # type: ignore[arg-type]
                      tuple(gates))  # type: ignore[arg-type]
    return SCORERS.get(generator, FALLBACK)
