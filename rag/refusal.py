"""The refusal decision, in one place: answer only what the documents support.

Small models answer from memory when the passages are silent, so the model's own verdict is one
signal among several. ``SIGNALS`` is the one ordered table of them: each is a small function
that reads what is known about a question at its stage (retrieved, drafted, verified) and
returns why to refuse, or None. The first signal that fires decides; the pipeline asks at each
stage so no work is done after a refusal. ``verdicts`` runs every signal, for the eval reports
that measure each one's contribution (README, Evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rag.answer_types import type_mismatch
from rag.calibration import RefusalModel, features, question_coverage
from rag.citations import SupportReport
from rag.generation import Draft
from rag.types import Passage

REFUSAL_ANSWER = "The documents do not say. I could not find an answer to this question in them."
Stage = Literal["retrieved", "drafted", "verified"]

# The confidence an answer needs, by generator, chosen on the tuning set (README, Evaluation);
# 0 turns verification off for a model too small to judge its own answers.
MIN_CONFIDENCE = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m": 0.9,
    "qwen2.5-coder-0.5b-instruct": 0.0,
}
DEFAULT_MIN_CONFIDENCE = 0.9


@dataclass(frozen=True)
class Policy:
    min_relevance: float  # least cosine similarity of the best passage to the question
    min_confidence: float  # least combined P(found) and P(supported); 0 = no verification
    # With a calibrated model, it weighs the rule signals' evidence instead of the rules.
    calibration: RefusalModel | None = None


@dataclass(frozen=True)
class Case:
    """What is known about one question so far."""

    question: str
    passages: list[Passage]
    draft: Draft | None = None
    support: SupportReport | None = None
    verification: float | None = None  # the verifier's P(yes); None when not asked


@dataclass(frozen=True)
class Verdict:
    refused: bool
    reason: str  # which signal decided and why; "" when answered


@dataclass(frozen=True)
class Signal:
    name: str
    stage: Stage
    fires: Callable[[Case, Policy], str | None]
    rule: bool = False  # weighed by the calibrated model instead, when one is in use


def _no_relevant_passage(case: Case, policy: Policy) -> str | None:
    best = max((p.similarity for p in case.passages), default=0.0)
    if best < policy.min_relevance:
        return f"best passage similarity {best:.2f} < {policy.min_relevance}"
    return None


def _model_says_not_found(case: Case, policy: Policy) -> str | None:
    draft, _ = _drafted(case)
    if not draft.found or not draft.answer:
        return "the model says the passages do not contain the answer"
    return None


def _wrong_answer_type(case: Case, policy: Policy) -> str | None:
    draft, _ = _drafted(case)
    wanted = type_mismatch(case.question, draft.answer)
    return f"the question asks for {wanted}" if wanted else None


def _echoes_question(case: Case, policy: Policy) -> str | None:
    _, support = _drafted(case)
    return "the answer only repeats the question" if support.echoes_question else None


def _names_nowhere(case: Case, policy: Policy) -> str | None:
    _, support = _drafted(case)
    if support.missing_names:
        return f"names or numbers in no passage ({', '.join(sorted(support.missing_names))})"
    return None


def _unsupported(case: Case, policy: Policy) -> str | None:
    _, support = _drafted(case)
    if not support.citations:
        return f"no passage supports it (best {support.best_support:.2f})"
    return None


def _low_confidence(case: Case, policy: Policy) -> str | None:
    """Two judgements of one draft by the model: P(found) while answering, and the verifier's
    P(supported) against the quoted evidence. Each alone is poorly calibrated on a small model;
    combined as independent odds they separate answers from inventions better than either."""
    draft, _ = _drafted(case)
    if policy.min_confidence <= 0 or case.verification is None:
        return None
    confidence = combined_confidence(draft.found_probability, case.verification)
    if confidence < policy.min_confidence:
        return (f"confidence {confidence:.2f} < {policy.min_confidence} (P(found) "
                f"{draft.found_probability:.2f}, P(supported) {case.verification:.2f})")
    return None


def _calibrated(case: Case, policy: Policy) -> str | None:
    """The calibrated model's estimate that the draft is right (rag.calibration)."""
    model = policy.calibration
    if model is None or case.verification is None:
        return None
    draft, support = _drafted(case)
    flags = {s.name: bool(s.fires(case, policy)) for s in SIGNALS if s.rule}
    best = max((p.similarity for p in case.passages), default=0.0)
    coverage = question_coverage(case.question, support.evidence_text)
    p = model.p_right(features(draft.found_probability, case.verification,
                               support.best_support, best, coverage, flags))
    if p < model.threshold:
        return f"estimated P(right) {p:.2f} < {model.threshold:.2f}"
    return None


SIGNALS: tuple[Signal, ...] = (
    Signal("retrieval", "retrieved", _no_relevant_passage),
    Signal("model verdict", "drafted", _model_says_not_found),
    Signal("answer type", "drafted", _wrong_answer_type, rule=True),
    Signal("echo", "drafted", _echoes_question, rule=True),
    Signal("invented name", "drafted", _names_nowhere, rule=True),
    Signal("no support", "drafted", _unsupported),
    Signal("confidence", "verified", _low_confidence, rule=True),
    Signal("calibrated", "verified", _calibrated),
)


def decide(case: Case, policy: Policy, stage: Stage) -> Verdict:
    """The first signal of ``stage`` that fires, or an answer. The pipeline asks after each
    stage in turn, so the signals of earlier stages have passed already. With a calibrated
    model the rule signals do not refuse on their own: the model weighs them."""
    for signal in SIGNALS:
        if signal.rule and policy.calibration is not None:
            continue
        if signal.stage == stage and (reason := signal.fires(case, policy)):
            return Verdict(True, f"{signal.name}: {reason}")
    return Verdict(False, "")


def verdicts(case: Case, policy: Policy) -> dict[str, str | None]:
    """Every signal's verdict on a fully known case (each refusal reason, or None)."""
    known = [s for s in SIGNALS if s.stage == "retrieved" or case.draft is not None]
    return {s.name: s.fires(case, policy) for s in known}


def combined_confidence(p: float, q: float) -> float:
    """p and q as independent evidence for the same claim: their odds multiply."""
    both, neither = p * q, (1.0 - p) * (1.0 - q)
    return both / (both + neither) if both + neither > 0 else 0.0


def _drafted(case: Case) -> tuple[Draft, SupportReport]:
    if case.draft is None or case.support is None:
        raise ValueError("this signal needs a draft and its support report")
    return case.draft, case.support
