"""What a scorer reads of a candidate answer in its trace, each a number: the features of
``rag.decision.scorers``.

All are computed from the trace alone (the measurements it recorded and its texts), so a report's
traces give exactly the features the service saw. Some describe the question and its draft (the
model's P(found), the passages' similarity), the rest the candidate: its probability under the
model, its length, where it came from, its support, its verification, and how much of the other
candidates' probability agrees with it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

from rag.decision.answer_types import type_mismatch
from rag.retrieval.lexical import name_terms, normalize, terms
from rag.types import CandidateTrace, Trace


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def question_coverage(trace: Trace, candidate: CandidateTrace) -> float:
    """The share of the question's content terms that the supporting sentences contain.

    An unanswerable question that resembles the text often asks about something the sentence
    the answer comes from does not mention (another name, year or role)."""
    asked = set(terms(trace.question))
    return len(asked & set(terms(candidate.evidence))) / len(asked) if asked else 1.0


def name_coverage(trace: Trace, candidate: CandidateTrace) -> float:
    """The share of the question's names, numbers and dates that the supporting sentences
    contain (1 when it names none): a swapped entity or year is missing there."""
    asked = set(name_terms(trace.question)) - set(name_terms(trace.question.split(" ")[0]))
    return len(asked & set(terms(candidate.evidence))) / len(asked) if asked else 1.0


def pmi_mean(trace: Trace, candidate: CandidateTrace) -> float:
    """How much more likely the evidence makes the question's tokens, on average (nats)."""
    values = trace.question_pmi or [0.0]
    return sum(values) / len(values)


def pmi_min(trace: Trace, candidate: CandidateTrace) -> float:
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


def odds_logit(trace: Trace, candidate: CandidateTrace) -> float:
    """The log-odds of P(found) and the verifier's P(yes) taken as independent evidence."""
    found = _measured(trace.found_probability, "found_probability")
    return logit(combined_confidence(found, _measured(candidate.verification, "verification")))


def overlap(a: str, b: str) -> float:
    """Token F1 of two answers (lowercase words, punctuation and articles ignored)."""
    x, y = Counter(_answer_words(a)), Counter(_answer_words(b))
    common = sum((x & y).values())
    if not common:
        return 0.0
    precision, recall = common / sum(x.values()), common / sum(y.values())
    return 2 * precision * recall / (precision + recall)


def _answer_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", normalize(text)) if w not in _ARTICLES]


_ARTICLES = frozenset({"a", "an", "the"})


def agreement(trace: Trace, candidate: CandidateTrace) -> float:
    """The share of the candidates' probability (their softmax) on candidates that say much the
    same as this one (token F1 at least one half): how settled the model is on it."""
    weights = [math.exp(c.logprob - _best_logprob(trace)) for c in trace.candidates]
    agreeing = sum(w for c, w in zip(trace.candidates, weights, strict=True)
                   if overlap(c.text, candidate.text) >= 0.5)
    return agreeing / sum(weights) if weights else 1.0


def _best_logprob(trace: Trace) -> float:
    return max((c.logprob for c in trace.candidates), default=0.0)


Feature = Callable[[Trace, CandidateTrace], float]
FEATURES: dict[str, Feature] = {
    "odds_logit": odds_logit,
    "found_logit": lambda t, c: logit(_measured(t.found_probability, "found_probability")),
    "verification_logit": lambda t, c: logit(_measured(c.verification, "verification")),
    "answer_logprob": lambda t, c: c.logprob / max(c.tokens, 1),
    "logprob_gap": lambda t, c: c.logprob - _best_logprob(t),
    "words": lambda t, c: math.log1p(len(_answer_words(c.text))),
    "from_prefix": lambda t, c: float(c.origin == "prefix"),
    "from_branch": lambda t, c: float(c.origin == "branch"),
    "agreement": agreement,
    "greedy_overlap": lambda t, c: overlap(c.text, t.draft or ""),
    "best_support": lambda t, c: c.best_support,
    "best_similarity": lambda t, c: t.best_similarity,
    "question_coverage": question_coverage,
    "name_coverage": name_coverage,
    "pmi_mean": pmi_mean,
    "pmi_min": pmi_min,
    "answer_type_mismatch": lambda t, c: float(type_mismatch(t.question, c.text) is not None),
    "echo": lambda t, c: float(c.echoes_question),
    "computed": lambda t, c: float(c.computed is not None),
}
