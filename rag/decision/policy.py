"""The decision, in one place: which candidate answer to give, or that the documents do not say.

Small models answer from memory when the passages are silent, so the model's own verdict is one
piece of evidence among several. Three kinds decide:

* **gates**: facts that refuse alone, each checked at the stage where it becomes known, so no
  work is spent after it (``retrieved``: no passage is even close; ``drafted``: the model says
  the passages do not hold the answer);
* **candidate gates**: facts that rule one candidate answer out (it is not of the kind asked
  for, only repeats the question, or no sentence of any passage supports it); when they rule
  out every candidate, the greedy answer's reason refuses;
* **the confidence**: a scorer's estimate that a candidate is right (``rag.decision.scorers``),
  from everything measured of it; the candidate it rates highest is chosen, and refused when
  below the operating point, ``min_confidence``.

The pipeline asks ``Policy.decide`` stage by stage; the eval replays recorded traces through
``Policy.verdict``, which runs the same stages in the same order, so the two cannot drift. A
learned scorer is one more ``Scorer``, never a second code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from rag.decision.answer_types import type_mismatch
from rag.types import CandidateTrace, Trace

REFUSAL_ANSWER = "The documents do not say. I could not find an answer to this question in them."
Stage = Literal["retrieved", "drafted", "measured"]
STAGES: tuple[Stage, ...] = ("retrieved", "drafted", "measured")
# What a scorer may ask the pipeline to measure of a supported draft (rag.answer.verification).
VERIFICATION, QUESTION_PMI = "verification", "question_pmi"


class Scorer(Protocol):
    """An estimate of P(a candidate answer is right) from a drafted trace."""

    @property
    def name(self) -> str: ...

    @property
    def measures(self) -> frozenset[str]:
        """What it reads beyond the draft: VERIFICATION, QUESTION_PMI."""

    @property
    def ranks_candidates(self) -> bool:
        """Whether its score tells one candidate from another; when not, only the greedy
        answer is eligible (a trace-level score would pick any candidate a gate spared)."""

    def score(self, trace: Trace, candidate: CandidateTrace) -> float:
        """What the candidates are ranked by (P(right) before its calibration)."""

    def p_right(self, trace: Trace, candidate: CandidateTrace) -> float: ...


@dataclass(frozen=True)
class Verdict:
    refused: bool
    reason: str = ""  # which gate or the confidence, and why; "" when answered
    confidence: float | None = None  # the chosen candidate's P(right), once measured
    chosen: int | None = None  # the index of the candidate answered (or refused for its P)


@dataclass(frozen=True)
class Gate:
    name: str
    stage: Stage
    fires: Callable[[Trace, Policy], str | None]  # why it refuses, or None


@dataclass(frozen=True)
class CandidateGate:
    name: str
    fires: Callable[[Trace, CandidateTrace], str | None]  # why it rules the candidate out


def _no_relevant_passage(trace: Trace, policy: Policy) -> str | None:
    if trace.best_similarity < policy.min_relevance:
        return f"best passage similarity {trace.best_similarity:.2f} < {policy.min_relevance}"
    return None


def _model_says_not_found(trace: Trace, policy: Policy) -> str | None:
    if not trace.draft or not trace.candidates:
        return "the model says the passages do not contain the answer"
    return None


def _wrong_answer_type(trace: Trace, candidate: CandidateTrace) -> str | None:
    """The question asks for an amount, year, date, time or share and the answer is not one.
    Leave-one-out on the tuning data (2026-11-30, docs/evaluation.md): +2 questions (article)."""
    wanted = type_mismatch(trace.question, candidate.text)
    return f"the question asks for {wanted}" if wanted else None


def _echoes_question(trace: Trace, candidate: CandidateTrace) -> str | None:
    """The answer only repeats the question's words or restates what it asks to be named.
    Leave-one-out on the tuning data: +5 questions (article +3, Normans +3, CCT -1)."""
    return "the answer only repeats the question" if candidate.echoes_question else None


def _unsupported(trace: Trace, candidate: CandidateTrace) -> str | None:
    if not candidate.support_citations:
        return f"no passage supports it (best {candidate.best_support:.2f})"
    return None


GATES: tuple[Gate, ...] = (
    Gate("retrieval", "retrieved", _no_relevant_passage),
    Gate("model verdict", "drafted", _model_says_not_found),
)
CANDIDATE_GATES: tuple[CandidateGate, ...] = (
    CandidateGate("answer type", _wrong_answer_type),
    CandidateGate("echo", _echoes_question),
    CandidateGate("no support", _unsupported),
)


@dataclass(frozen=True)
class Policy:
    scorer: Scorer
    min_relevance: float  # least cosine similarity of the best passage to the question
    min_confidence: float  # the operating point: least P(right) an answer needs
    gates: tuple[Gate, ...] = GATES
    candidate_gates: tuple[CandidateGate, ...] = CANDIDATE_GATES

    @property
    def measures(self) -> frozenset[str]:
        return self.scorer.measures

    def with_min_confidence(self, value: float | None) -> Policy:
        """The same policy at another operating point (a request's own); None keeps it."""
        return self if value is None else replace(self, min_confidence=value)

    def ruled_out(self, trace: Trace, candidate: CandidateTrace) -> str | None:
        """Why a candidate gate rules ``candidate`` out, or None."""
        for gate in self.candidate_gates:
            if why := gate.fires(trace, candidate):
                return f"{gate.name}: {why}"
        return None

    def eligible(self, trace: Trace) -> list[int]:
        """The candidates no candidate gate rules out, by index (only the greedy one when the
        scorer cannot rank them)."""
        considered = trace.candidates if self.scorer.ranks_candidates else trace.candidates[:1]
        return [i for i, c in enumerate(considered) if self.ruled_out(trace, c) is None]

    def decide(self, trace: Trace, stage: Stage) -> Verdict:
        """The verdict once ``stage`` is known; the earlier stages have passed already."""
        for gate in self.gates:
            if gate.stage == stage and (why := gate.fires(trace, self)):
                return Verdict(True, f"{gate.name}: {why}")
        if stage == "retrieved":
            return Verdict(False)
        eligible = self.eligible(trace)
        if not eligible:
            return Verdict(True, self.ruled_out(trace, trace.candidates[0]) or "", chosen=0)
        if stage == "drafted":
            return Verdict(False)
        ranks = {i: self.scorer.score(trace, trace.candidates[i]) for i in eligible}
        best = max(eligible, key=lambda i: ranks[i])  # ties: the earlier, greedy first
        p = self.scorer.p_right(trace, trace.candidates[best])
        if p < self.min_confidence:
            return Verdict(True, f"confidence: P(right) {p:.2f} < {self.min_confidence:g} "
                                 f"({self.scorer.name})", p, best)
        return Verdict(False, "", p, best)

    def verdict(self, trace: Trace) -> Verdict:
        """Every stage in order on a complete trace: what the service decided (a replay)."""
        for stage in STAGES:
            if stage != "retrieved" and not trace.drafted:
                raise ValueError("a trace refused before drafting must fail at retrieval")
            verdict = self.decide(trace, stage)
            if verdict.refused or stage == "measured":
                return verdict
        raise AssertionError("unreachable")

    def explain(self, trace: Trace) -> dict[str, str | None]:
        """Every gate's verdict on a drafted trace, each alone (for eval reports); a candidate
        gate's on the greedy answer."""
        found: dict[str, str | None] = {gate.name: gate.fires(trace, self) for gate in self.gates}
        greedy = trace.candidates[0] if trace.candidates else None
        for gate in self.candidate_gates:
            found[gate.name] = gate.fires(trace, greedy) if greedy is not None else None
        return found
