"""The refusal decision: answer only what the documents support.

Small models answer from memory when the passages are silent, so the model's own verdict is one
signal among several. Each rule below names the signal it reads; any one of them refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def judge(draft: Draft, support: SupportReport) -> Verdict:
    """Refuse unless the model found an answer and the passages verifiably support it."""
    if not draft.found or not draft.answer:
        return Verdict(True, "model: says the passages do not contain the answer")
    if support.echoes_question:
        return Verdict(True, "grounding: the answer only repeats words of the question")
    if support.missing_names:
        missing = ", ".join(sorted(support.missing_names))
        return Verdict(True, f"grounding: names or numbers in no passage ({missing})")
    if not support.citations:
        return Verdict(True, f"grounding: no passage supports it (best {support.best_support:.2f})")
    return Verdict(False, "")


def confirm(probability: float, min_verification: float) -> Verdict:
    """The verifier's judgement of the answer against its quoted evidence."""
    if probability < min_verification:
        return Verdict(True, f"verifier: P(supported) {probability:.2f} < {min_verification}")
    return Verdict(False, "")
