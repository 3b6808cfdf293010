"""Answer, citation, refusal and retrieval metrics, computed without any LLM judge.

Answer matching follows SQuAD's normalization (lowercase, no punctuation, no articles, collapsed
whitespace). ``answer_em`` is SQuAD's exact match: the normalized answer equals a normalized gold
answer. ``answer_str_em`` asks whether a normalized gold answer occurs in the normalized answer as
a run of whole words, so "1910" is not found in "19101" nor "Iida" in "Iidax". Words are compared
twice, once with punctuation deleted as SQuAD does ("U.S." is "us") and once with punctuation as
a word break ("1910-45" is "1910 45", so "1910" is found in it).

``answer_strict`` is what "right" means everywhere (gates, the fit, the operating point, the
curves): the answer contains a gold alternative *and* is not padded, its SQuAD token F1 against
that same alternative at least ``STRICT_F1`` (0.5). A copied sentence that happens to contain the
gold contains it but is not an answer; ``answer_str_em`` stays as a secondary, lenient number.

Every rate (a share of questions or citations) also has its count ``[k, n]`` (``counts``) and a
95% Wilson score interval (``wilson``), so a report says how far the rate can be trusted.
"""

from __future__ import annotations

import math
import re
import statistics
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation) | set("‘’“”—–…")

METRIC_NAMES = (
    "accuracy",
    "answer_strict",
    "answer_em",
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

# The metrics that are shares k/n: reported with their count and a Wilson interval.
RATE_METRICS = (
    "accuracy",
    "answer_strict",
    "answer_em",
    "answer_str_em",
    "refusal_accuracy",
    "false_refusal_rate",
    "citation_precision",
    "citation_recall",
    "retrieval_recall_at_k",
)

WILSON_Z = 1.959963984540054
# An answer within this token F1 of the gold alternative it contains is not padded.
STRICT_F1 = 0.5  # the 97.5% normal quantile: a two-sided 95% interval


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _words(text: str) -> list[str]:
    """Like ``normalize_answer`` but punctuation breaks words instead of joining them."""
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text.lower())
    return _ARTICLES.sub(" ", text).split()


def _has_run(words: Sequence[str], run: Sequence[str]) -> bool:
    size = len(run)
    return size > 0 and any(
        list(words[i:i + size]) == list(run) for i in range(len(words) - size + 1)
    )


# A gold answer: one string, or the parts a whole answer must name, each somewhere in it
# ("ballistic" and "nuclear" for a question about two weapons programs).
Gold = str | tuple[str, ...]


def contains_answer(prediction: str, golds: Sequence[Gold]) -> bool:
    """A normalized gold answer occurs in the normalized prediction as a run of whole words (of
    a gold with parts: every part does)."""
    squad, broken = normalize_answer(prediction).split(), _words(prediction)

    def found(part: str) -> bool:
        return _has_run(squad, normalize_answer(part).split()) or _has_run(broken, _words(part))

    return any(all(map(found, _parts(gold))) for gold in golds)


def is_right(prediction: str, golds: Sequence[Gold]) -> bool:
    """Strictly right: some gold alternative occurs in ``prediction`` (``contains_answer``) and
    ``prediction``'s token F1 against that alternative is at least ``STRICT_F1``."""
    return any(contains_answer(prediction, [gold])
               and _padding_f1(prediction, " ".join(_parts(gold))) >= STRICT_F1
               for gold in golds)


def _padding_f1(prediction: str, gold: str) -> float:
    """Token F1 with words compared both ways ``contains_answer`` compares them, the better of
    the two: "object.__gt__()" is one SQuAD token but the words "object gt" broken at
    punctuation, where "__gt__" is one padded word, not a different one."""
    return max(token_f1(prediction, gold), _f1(_words(prediction), _words(gold)))


def exact_match(prediction: str, golds: Sequence[Gold]) -> bool:
    """SQuAD's exact match: the normalized prediction equals a normalized gold answer (a gold
    with parts as its parts joined by "and")."""
    predicted = normalize_answer(prediction)
    return any(predicted == gold for gold in map(normalize_answer, map(gold_text, golds)) if gold)


def gold_text(gold: Gold) -> str:
    """A gold answer as one string: its parts joined by "and"."""
    return " and ".join(_parts(gold))


def _parts(gold: Gold) -> tuple[str, ...]:
    return (gold,) if isinstance(gold, str) else gold


def token_f1(prediction: str, gold: str) -> float:
    return _f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _f1(predicted: list[str], expected: list[str]) -> float:
    common = Counter(predicted) & Counter(expected)
    overlap = sum(common.values())
    if not predicted or not expected or overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, golds: Sequence[Gold]) -> float:
    return max((token_f1(prediction, gold_text(gold)) for gold in golds), default=0.0)


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
    golds: tuple[Gold, ...]
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
    def right(self) -> bool:
        """Answered strictly right (``answer_strict``)."""
        return self.answerable and not self.refused and is_right(self.answer, self.golds)

    @property
    def exact(self) -> bool:
        return self.answerable and not self.refused and exact_match(self.answer, self.golds)

    @property
    def correct(self) -> bool:
        """Answered strictly right when answerable, refused when not."""
        return self.right if self.answerable else self.refused

    @property
    def f1(self) -> float:
        return 0.0 if self.refused or not self.answerable else best_f1(self.answer, self.golds)

    @property
    def refusal_correct(self) -> bool:
        return self.refused != self.answerable

    def citation_hits(self) -> list[bool]:
        """One flag per citation; an unanswerable question has no evidence, so all are wrong."""
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


def counts(outcomes: Sequence[QuestionOutcome]) -> dict[str, tuple[int, int]]:
    """Each rate metric as ``(k, n)``: k of n questions (or citations) count for it."""
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    # Every question answered rather than refused: citations given to an unanswerable question
    # that should have been refused count too, and all of them are wrong.
    hits = [hit for o in outcomes if not o.refused for hit in o.citation_hits()]
    return {
        "accuracy": _count(o.correct for o in outcomes),
        "answer_strict": _count(o.right for o in answerable),
        "answer_em": _count(o.exact for o in answerable),
        "answer_str_em": _count(o.answer_hit for o in answerable),
        "refusal_accuracy": _count(o.refused for o in unanswerable),
        "false_refusal_rate": _count(o.refused for o in answerable),
        "citation_precision": _count(hits),
        "citation_recall": _count(o.cited_evidence for o in answerable),
        "retrieval_recall_at_k": _count(o.evidence_rank is not None for o in answerable),
    }


def compute(outcomes: Sequence[QuestionOutcome]) -> dict[str, float | None]:
    """All metrics; a metric with nothing to measure (no unanswerable questions, say) is None."""
    answerable = [o for o in outcomes if o.answerable]
    latencies = [o.latency_s for o in outcomes]
    rates: dict[str, float | None] = {
        name: k / n if n else None for name, (k, n) in counts(outcomes).items()
    }
    if rates["citation_precision"] is None and any(not o.refused for o in outcomes):
        # Answers without any citation count as zero precision: a gate must not pass a silent
        # model.
        rates["citation_precision"] = 0.0
    values = {
        **rates,
        "answer_f1": _mean(o.f1 for o in answerable),
        "mrr": _mean(1.0 / r if (r := o.evidence_rank) else 0.0 for o in answerable),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
    }
    return {name: values[name] for name in METRIC_NAMES}


def wilson(k: int, n: int, z: float = WILSON_Z) -> tuple[float, float] | None:
    """The Wilson score interval of the share k/n (None when n is 0)."""
    if n <= 0:
        return None
    p = k / n
    scale = 1 + z * z / n
    center = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    low = 0.0 if k <= 0 else max(0.0, center - half)
    high = 1.0 if k >= n else min(1.0, center + half)
    return low, high


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def _count(flags: Iterable[bool]) -> tuple[int, int]:
    values = list(flags)
    return sum(values), len(values)


def _mean(values: Iterable[float]) -> float | None:
    numbers = list(values)
    return sum(numbers) / len(numbers) if numbers else None
