"""Answer, citation, refusal and retrieval metrics, computed without any LLM judge.

Answer matching follows SQuAD's normalization (lowercase, no punctuation, no articles, collapsed
whitespace). ``answer_str_em`` asks whether a normalized gold answer is a substring of the
normalized answer, so gold answers must not be so short that they occur inside unrelated words.
"""

from __future__ import annotations

import re
import statistics
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation) | set("‘’“”—–…")

METRIC_NAMES = (
    "answer_str_em",
    "answer_f1",
    "refusal_accuracy",
    "false_refusal_rate",
    "citation_precision",
    "citation_recall",
    "retrieval_recall_at_k",
    "mrr",
    "latency_p50_s",
    "latency_p95_s",
)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def contains_answer(prediction: str, golds: Sequence[str]) -> bool:
    predicted = normalize_answer(prediction)
    return any(gold in predicted for gold in map(normalize_answer, golds) if gold)


def token_f1(prediction: str, gold: str) -> float:
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(gold).split()
    common = Counter(predicted) & Counter(expected)
    overlap = sum(common.values())
    if not predicted or not expected or overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, golds: Sequence[str]) -> float:
    return max((token_f1(prediction, gold) for gold in golds), default=0.0)


@dataclass(frozen=True)
class Located:
    """A span in a named source document."""

    source: str
    start: int
    end: int

    def overlaps(self, other: Located) -> bool:
        return self.source == other.source and self.start < other.end and other.start < self.end

    def contains(self, other: Located) -> bool:
        return self.source == other.source and self.start <= other.start and other.end <= self.end


def locate(evidence: Sequence[str], documents: dict[str, str]) -> list[Located]:
    """Every occurrence of every evidence string in the documents."""
    found = []
    for text in evidence:
        for source, body in documents.items():
            start = body.find(text)
            while start >= 0:
                found.append(Located(source, start, start + len(text)))
                start = body.find(text, start + 1)
    return found


@dataclass(frozen=True)
class QuestionOutcome:
    """One gold question and what the pipeline did with it, ready for scoring."""

    answerable: bool
    golds: tuple[str, ...]
    answer: str
    refused: bool
    citations: tuple[Located, ...]
    passages: tuple[Located, ...]
    evidence: tuple[Located, ...]
    latency_s: float

    @property
    def answer_hit(self) -> bool:
        return self.answerable and not self.refused and contains_answer(self.answer, self.golds)

    @property
    def f1(self) -> float:
        return 0.0 if self.refused or not self.answerable else best_f1(self.answer, self.golds)

    @property
    def refusal_correct(self) -> bool:
        return self.refused != self.answerable

    def citation_hits(self) -> list[bool]:
        return [any(c.overlaps(e) for e in self.evidence) for c in self.citations]

    @property
    def cited_evidence(self) -> bool:
        return any(self.citation_hits())

    @property
    def evidence_rank(self) -> int | None:
        """1-based rank of the first retrieved passage holding some evidence span."""
        for rank, passage in enumerate(self.passages, start=1):
            if any(passage.contains(e) for e in self.evidence):
                return rank
        return None


def compute(outcomes: Sequence[QuestionOutcome]) -> dict[str, float | None]:
    """All metrics; a metric with nothing to measure (no unanswerable questions, say) is None."""
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    answered = [o for o in answerable if not o.refused]
    hits = [hit for o in answered for hit in o.citation_hits()]
    ranks = [o.evidence_rank for o in answerable]
    latencies = [o.latency_s for o in outcomes]
    return {
        "answer_str_em": _share(o.answer_hit for o in answerable),
        "answer_f1": _mean(o.f1 for o in answerable),
        "refusal_accuracy": _share(o.refused for o in unanswerable),
        "false_refusal_rate": _share(o.refused for o in answerable),
        # Answers without any citation count as zero precision: a gate must not pass a silent model.
        "citation_precision": _share(hits) if hits else (0.0 if answered else None),
        "citation_recall": _share(o.cited_evidence for o in answerable),
        "retrieval_recall_at_k": _share(r is not None for r in ranks),
        "mrr": _mean(1.0 / r if r else 0.0 for r in ranks),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
    }


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def _share(flags: Iterable[bool]) -> float | None:
    values = list(flags)
    return sum(values) / len(values) if values else None


def _mean(values: Iterable[float]) -> float | None:
    numbers = list(values)
    return sum(numbers) / len(numbers) if numbers else None
