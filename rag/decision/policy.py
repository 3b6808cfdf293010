"""The decision, in one place: answer, or say that the documents do not say.

Small models answer from memory when the passages are silent, so the model's own verdict is one
piece of evidence among several. Two kinds decide:

* **gates**: facts that refuse alone, each checked at the stage where it becomes known, so no
  work is spent after it (``retrieved``: no passage is even close; ``drafted``: the model says
  the passages do not hold the answer, the answer is not of the kind asked for or only repeats
  the question, or no sentence of any passage supports it);
* **the confidence**: a scorer's estimate that the draft is right (``rag.decision.scorers``),
  from everything measured of it; below the operating point, ``min_confidence``, it is refused.

The pipeline asks ``Policy.decide`` stage by stage; the eval replays recorded traces through
``Policy.verdict``, which runs the same stages in the same order, so the two cannot drift. A
learned scorer is one more ``Scorer``, never a second code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from rag.decision.answer_types import type_mismatch
from rag.types import Trace

REFUSAL_ANSWER = "The documents do not say. I could not find an answer to this question in them."
Stage = Literal["retrieved", "drafted", "measured"]
STAGES: tuple[Stage, ...] = ("retrieved", "drafted", "measured")
# What a scorer may ask the pipeline to measure of a supported draft (rag.answer.verification).
VERIFICATION, QUESTION_PMI = "verification", "question_pmi"


class Scorer(Protocol):
    """An estimate of P(the draft is right) from a drafted trace."""

    @property
    def name(self) -> str: ...

    @property
    def measures(self) -> frozenset[str]:
        """What it reads beyond the draft: VERIFICATION, QUESTION_PMI."""

    def p_right(self, trace: Trace) -> float: ...


@dataclass(frozen=True)
class Verdict:
    refused: bool
    reason: str = ""  # which gate or the confidence, and why; "" when answered
    confidence: float | None = None  # the scorer's P(right), once the draft was measured


@dataclass(frozen=True)
class Gate:
    name: str
    stage: Stage
    fires: Callable[[Trace, Policy], str | None]  # why it refuses, or None


def _no_relevant_passage(trace: Trace, policy: Policy) -> str | None:
    if trace.best_similarity < policy.min_relevance:
        return f"best passage similarity {trace.best_similarity:.2f} < {policy.min_relevance}"
    return None


def _model_says_not_found(trace: Trace, policy: Policy) -> str | None:
    if not trace.draft:
        return "the model says the passages do not contain the answer"
    return None


def _wrong_answer_type(trace: Trace, policy: Policy) -> str | None:
    """The question asks for an amount, year, date, time or share and the draft is not one.
    Leave-one-out on the tuning data (2026-11-30, docs/evaluation.md): +2 questions (article)."""
    wanted = type_mismatch(trace.question, trace.draft or "")
    return f"the question asks for {wanted}" if wanted else None


def _echoes_question(trace: Trace, policy: Policy) -> str | None:
    """The draft only repeats the question's words or restates what it asks to be named.
    Leave-one-out on the tuning data: +5 questions (article +3, Normans +3, CCT -1)."""
    return "the answer only repeats the question" if trace.echoes_question else None


def _unsupported(trace: Trace, policy: Policy) -> str | None:
    if not trace.support_citations:
        return f"no passage supports it (best {trace.best_support:.2f})"
    return None


GATES: tuple[Gate, ...] = (
    Gate("retrieval", "retrieved", _no_relevant_passage),
    Gate("model verdict", "drafted", _model_says_not_found),
    Gate("answer type", "drafted", _wrong_answer_type),
    Gate("echo", "drafted", _echoes_question),
    Gate("no support", "drafted", _unsupported),
)


@dataclass(frozen=True)
class Policy:
    scorer: Scorer
    min_relevance: float  # least cosine similarity of the best passage to the question
    min_confidence: float  # the operating point: least P(right) an answer needs
    gates: tuple[Gate, ...] = GATES

    @property
    def measures(self) -> frozenset[str]:
        return self.scorer.measures

    def with_min_confidence(self, value: float | None) -> Policy:
        """The same policy at another operating point (a request's own); None keeps it."""
        return self if value is None else replace(self, min_confidence=value)

    def decide(self, trace: Trace, stage: Stage) -> Verdict:
        """The verdict once ``stage`` is known; the earlier stages have passed already."""
        for gate in self.gates:
            if gate.stage == stage and (why := gate.fires(trace, self)):
                return Verdict(True, f"{gate.name}: {why}")
        if stage != "measured":
            return Verdict(False)
        p = self.scorer.p_right(trace)
        if p < self.min_confidence:
            return Verdict(True, f"confidence: P(right) {p:.2f} < {self.min_confidence:g} "
                                 f"({self.scorer.name})", p)
        return Verdict(False, "", p)

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
        """Every gate's verdict on a drafted trace, each alone (for eval reports)."""
        return {gate.name: gate.fires(trace, self) for gate in self.gates}
