"""The refusal decision: answer only what the documents support.

Small models answer from memory when the passages are silent, so the model's own verdict is one
signal among several. Each rule below names the signal it reads; any one of them refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.answer_types import type_mismatch
from rag.citations import SupportReport
from rag.generation import Draft
from rag.types import Passage

REFUSAL_ANSWER = "The documents do not say. I could not find an answer to this question in them."


@dataclass(frozen=True)
class Verdict:
    refused: bool
    reason: str  # which signal decided; "" when answered


def out_of_scope(passages: list[Passage], min_relevance: float) -> Verdict | None:
    """Refuse before generating when no passage is even close to the question."""
    best = max((p.similarity for p in passages), default=0.0)
    if best < min_relevance:
        return Verdict(True, f"retrieval: best passage similarity {best:.2f} < {min_relevance}")
    return None


def judge(question: str, draft: Draft, support: SupportReport) -> Verdict:
    """Refuse unless the model found an answer and the passages verifiably support it."""
    if not draft.found or not draft.answer:
        return Verdict(True, "model: says the passages do not contain the answer")
    if wanted := type_mismatch(question, draft.answer):
        return Verdict(True, f"answer type: the question asks for {wanted}")
    if support.echoes_question:
        return Verdict(True, "grounding: the answer only repeats words of the question")
    if support.missing_names:
        missing = ", ".join(sorted(support.missing_names))
        return Verdict(True, f"grounding: names or numbers in no passage ({missing})")
    if not support.citations:
        return Verdict(True, f"grounding: no passage supports it (best {support.best_support:.2f})")
    return Verdict(False, "")


def confirm(found: float, supported: float, min_confidence: float) -> Verdict:
    """Two judgements of one draft by the model: P(found) while answering, and the verifier's
    P(supported) against the quoted evidence. Each alone is poorly calibrated on a small
    model; combined as independent odds they separate answers from inventions better than
    either (README, Evaluation)."""
    confidence = combined_confidence(found, supported)
    if confidence < min_confidence:
        return Verdict(
            True,
            f"confidence {confidence:.2f} < {min_confidence} "
            f"(P(found) {found:.2f}, P(supported) {supported:.2f})",
        )
    return Verdict(False, "")


def combined_confidence(p: float, q: float) -> float:
    """p and q as independent evidence for the same claim: their odds multiply."""
    both, neither = p * q, (1.0 - p) * (1.0 - q)
    return both / (both + neither) if both + neither > 0 else 0.0
