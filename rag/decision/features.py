"""What a scorer reads of a drafted trace, each a number: the features of ``rag.decision.scorers``.

All are computed from the trace alone (the measurements it recorded and its texts), so a report's
traces give exactly the features the service saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rag.decision.answer_types import type_mismatch
from rag.retrieval.lexical import name_terms, terms
from rag.types import Trace


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def question_coverage(trace: Trace) -> float:
    """The share of the question's content terms that the supporting sentences contain.

    An unanswerable question that resembles the text often asks about something the sentence
    the answer comes from does not mention (another name, year or role)."""
    asked = set(terms(trace.question))
    return len(asked & set(terms(trace.evidence))) / len(asked) if asked else 1.0


def name_coverage(trace: Trace) -> float:
    """The share of the question's names, numbers and dates that the supporting sentences
    contain (1 when it names none): a swapped entity or year is missing there."""
    asked = set(name_terms(trace.question)) - set(name_terms(trace.question.split(" ")[0]))
    return len(asked & set(terms(trace.evidence))) / len(asked) if asked else 1.0


def pmi_mean(trace: Trace) -> float:
    """How much more likely the evidence makes the question's tokens, on average (nats)."""
    values = trace.question_pmi or [0.0]
    return sum(values) / len(values)


def pmi_min(trace: Trace) -> float:
    """The question token the evidence makes least likely: a swapped entity, year or antonym."""
    return min(trace.question_pmi or [0.0])


def _measured(value: float | None, name: str) -> float:
    if value is None:
        raise ValueError(f"this scorer needs {name}, which the trace did not measure")
    return value


def combined_confidence(p: float, q: float) -> float:
    """p and q as independent evidence for the same claim: their odds multiply."""
    both, neither = p * q, (1.0 - p) * (1.0 - q)
    return both / (both + neither) if both + neither > 0 else 0.0


def odds_logit(trace: Trace) -> float:
    """The log-odds of P(found) and the verifier's P(yes) taken as independent evidence."""
    found = _measured(trace.found_probability, "found_probability")
    return logit(combined_confidence(found, _measured(trace.verification, "verification")))


FEATURES: dict[str, Callable[[Trace], float]] = {
    "odds_logit": odds_logit,
    "found_logit": lambda t: logit(_measured(t.found_probability, "found_probability")),
    "verification_logit": lambda t: logit(_measured(t.verification, "verification")),
    "answer_logprob": lambda t: _measured(t.answer_logprob, "answer_logprob"),
    "best_support": lambda t: t.best_support,
    "best_similarity": lambda t: t.best_similarity,
    "question_coverage": question_coverage,
    "name_coverage": name_coverage,
    "pmi_mean": pmi_mean,
    "pmi_min": pmi_min,
    "answer_type_mismatch": lambda t: float(type_mismatch(t.question, t.draft or "") is not None),
    "echo": lambda t: float(t.echoes_question),
}
