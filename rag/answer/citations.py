"""Citation checking: does a passage really support the answer, and which sentence says it?

Every sentence of every retrieved passage is scored against the question and the answer:

* lexical: the share of the answer's *new* content terms (those not already in the question)
  that the sentence contains, so "Toshimitsu Motegi" is supported only where that name appears;
* semantic: cosine similarity of the question and the sentence, which picks, among sentences
  that mention the answer, the one that is about what was asked. The sentences' embeddings are
  the index's (computed when the chunk was indexed); only the question is embedded, once, by
  the retriever.

A passage's support is its best sentence (or pair of adjacent sentences, for answers that need
both). The model's citations are kept only if they point at a passage it was given and that
passage supports the answer; a passage the model forgot is added when it covers answer terms no
kept citation covers. Each citation quotes the exact supporting source text by offsets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rag.answer.arithmetic import derive
from rag.retrieval.embedder import Embedder, Vectors, split_rows
from rag.retrieval.lexical import terms, words
from rag.retrieval.store import SpanVectors
from rag.types import Chunk, Citation, Document, Passage, Span

LEXICAL_WEIGHT = 0.7
SEMANTIC_WEIGHT = 0.3
# An answer this close in meaning to what the question asks to be named only restates it
# ("Which European banks?" -> "European lenders"); named answers measured 0.71 at most.
RESTATEMENT_SIMILARITY = 0.8


_AUXILIARY = r"did|does|do|is|was|were|are|has|have|had|will|would|can|could|should|may|might|must"
# "Which European banks did ...": the words between which/what and the verb.
_FOCUS = re.compile(
    rf"\b(?:which|what)\s+((?:[\w'’.-]+\s+){{0,3}}?[\w'’.-]+?)\s+(?:(?:{_AUXILIARY})\b|[a-z]+ed\b)",
    re.IGNORECASE,
)
# "What kind of talks?" asks for a description, so an answer that restates "talks" is fine.
_DESCRIPTIVE = re.compile(r"(kind|type|sort|form)s? of\b", re.IGNORECASE)


def question_focus(question: str) -> str | None:
    """The thing a which/what question asks to be named ("European banks"), if any."""
    match = _FOCUS.search(question)
    if match is None or _DESCRIPTIVE.match(match.group(1)):
        return None
    return match.group(1)


@dataclass(frozen=True)
class SentenceSupport:
    passage: int  # 0-based index into the retrieved passages
    span: Span
    pair: bool  # two adjacent sentences rather than one
    lexical: float
    semantic: float
    covered: frozenset[str]

    @property
    def score(self) -> float:
        return LEXICAL_WEIGHT * self.lexical + SEMANTIC_WEIGHT * self.semantic


@dataclass(frozen=True)
class SupportReport:
    """Citations that survived checking, plus the signals the refusal decision uses."""

    citations: list[Citation]
    best_support: float
    echoes_question: bool  # the answer adds nothing to the question's words or their meaning
    # A computed answer's derivation from the cited sentences (rag.answer.arithmetic).
    computed: str | None = None

    @property
    def evidence_text(self) -> str:
        return " ".join(c.quote for c in self.citations)


@dataclass(frozen=True)
class SentenceTable:
    """Every sentence (and adjacent pair) of the retrieved passages, its words and its similarity
    to the question: computed once per question and shared by every candidate answer."""

    question: str
    passages: list[Passage]
    spans: list[tuple[int, Span, bool]]  # passage index, span, pair
    texts: list[str]
    words: list[frozenset[str]]  # content terms and plain words of each text
    semantic: list[float]  # cosine similarity to the question, clipped to [0, 1]
    focus: Vectors | None  # what the question asks to be named, embedded (question_focus)


class CitationChecker:
    def __init__(
        self, embedder: Embedder, min_support: float, documents: Mapping[str, Document],
        stored: SpanVectors | None = None,
    ) -> None:
        """``documents``: the indexed documents by id, for the page a quote is on; ``stored``:
        the index's span embeddings (a passage of a chunk not stored is embedded when checked)."""
        self.embedder = embedder
        self.min_support = min_support
        self.documents = documents
        self.stored = stored

    def check(
        self, question: str, answer: str, cited: list[int], passages: list[Passage],
    ) -> SupportReport:
        return self.support(self.table(question, passages), answer, cited)

    def table(self, question: str, passages: list[Passage],
              question_vector: Vectors | None = None) -> SentenceTable:
        """The sentences of ``passages`` scored against ``question`` (``question_vector``: its
        embedding, when the retriever made it already). One embedding call at most: for what
        the index does not hold (the question, its focus, spans of chunks not stored)."""
        spans = [(i, span, pair) for i, passage in enumerate(passages)
                 for span, pair in passage.chunk.spans()]
        texts = [passages[i].chunk.slice(span) for i, span, _ in spans]
        focus = question_focus(question)
        asked = ([question] if question_vector is None else []) + ([focus] if focus else [])
        stored = [self._stored(p.chunk) for p in passages]
        missing = [p.chunk for p, rows in zip(passages, stored, strict=True) if rows is None]
        fresh = self.embedder.encode(asked + [c.slice(span) for c in missing
                                              for span, _ in c.spans()])
        q = fresh[0] if question_vector is None else question_vector.reshape(-1)
        computed = iter(split_rows(fresh[len(asked):], [len(c.spans()) for c in missing]))
        rows = [r if r is not None else next(computed) for r in stored]
        semantic = ([float(v) for v in np.clip(np.vstack(rows) @ q, 0.0, 1.0)] if texts
                    else [])
        return SentenceTable(question, passages, spans, texts,
                             [frozenset(terms(t) + words(t)) for t in texts], semantic,
                             fresh[len(asked) - 1] if focus else None)

    def _stored(self, chunk: Chunk) -> Vectors | None:
        return None if self.stored is None else self.stored.of_chunk(chunk)

    def support(self, table: SentenceTable, answer: str, cited: list[int]) -> SupportReport:
        """Which sentences of ``table`` support ``answer``; the model's citations ``cited``
        (1-based passage numbers) kept where they do, forgotten ones added."""
        question, passages = table.question, table.passages
        answer_terms, echoes = _new_terms(question, answer)
        sentences = _score_sentences(table, answer, answer_terms)
        best_per_passage = _best_per_passage(sentences)
        supported = {
            i: s for i, s in best_per_passage.items() if s.score >= self.min_support
        }
        if not supported and (derived := self._derived(table, answer)) is not None:
            return derived
        chosen = list(dict.fromkeys(n - 1 for n in cited if n - 1 in supported))
        chosen += _forgotten(supported, chosen, answer_terms)
        chosen = _distinct_quotes(chosen, supported, passages)
        return SupportReport(
            citations=[
                _citation(number, passages[i], supported[i],
                          self.documents[passages[i].chunk.source])
                for number, i in enumerate(chosen, start=1)
            ],
            best_support=max((s.score for s in best_per_passage.values()), default=0.0),
            echoes_question=echoes or self._restates_focus(table.focus, answer),
        )

    def _derived(self, table: SentenceTable, answer: str) -> SupportReport | None:
        """A computed answer supported by the sentences that hold its inputs: those closest to
        the question (single sentences, one citation each)."""
        singles = sorted((k for k, (_, _, pair) in enumerate(table.spans) if not pair),
                         key=lambda k: -table.semantic[k])
        derivation = derive(table.question, answer, [table.texts[k] for k in singles])
        if derivation is None:
            return None
        used = [singles[k] for k in derivation.sentences]
        citations = []
        for number, k in enumerate(used, start=1):
            i, span, _ = table.spans[k]
            support = SentenceSupport(i, span, False, 1.0, table.semantic[k], frozenset())
            citations.append(_citation(number, table.passages[i], support,
                                       self.documents[table.passages[i].chunk.source]))
        return SupportReport(citations, max(c.score for c in citations), False, derivation.how)

    def _restates_focus(self, focus: Vectors | None, answer: str) -> bool:
        if focus is None or not answer.strip():
            return False
        return float(focus @ self.embedder.encode([answer])[0]) >= RESTATEMENT_SIMILARITY


def _score_sentences(table: SentenceTable, answer: str,
                     answer_terms: frozenset[str]) -> list[SentenceSupport]:
    if not answer.strip():
        return []
    supports = []
    for (i, span, pair), found, sim in zip(table.spans, table.words, table.semantic,
                                           strict=True):
        covered = answer_terms & found
        lexical = len(covered) / len(answer_terms) if answer_terms else 0.0
        supports.append(SentenceSupport(i, span, pair, lexical, sim, covered))
    return supports


def _new_terms(question: str, answer: str) -> tuple[frozenset[str], bool]:
    """Content terms the answer adds to the question, and whether it adds none at all.

    An answer made only of the question's words is an echo, except for a choice the question
    itself offers ("before or after?").
    """
    # An answer made only of stop words ("before") is matched on its plain words.
    answer_terms = frozenset(terms(answer)) or frozenset(words(answer))
    new = answer_terms - frozenset(terms(question)) - frozenset(words(question))
    offers_choice = " or " in f" {question.lower()} "
    return (new or answer_terms), not new and not offers_choice


def _best_per_passage(sentences: list[SentenceSupport]) -> dict[int, SentenceSupport]:
    """Each passage's best sentence; a sentence pair wins only by covering more answer terms."""
    best: dict[int, SentenceSupport] = {}
    for s in sentences:  # a passage's single sentences come before its pairs
        current = best.get(s.passage)
        if current is None:
            best[s.passage] = s
        elif s.pair and not current.pair:
            if s.lexical > current.lexical:
                best[s.passage] = s
        elif s.score > current.score:
            best[s.passage] = s
    return best


def _forgotten(
    supported: dict[int, SentenceSupport], chosen: list[int], answer_terms: frozenset[str]
) -> list[int]:
    """Supporting passages that cover answer terms the chosen citations leave uncovered."""
    covered: set[str] = set().union(*(supported[i].covered for i in chosen)) if chosen else set()
    added: list[int] = []
    ranked = sorted(supported, key=lambda i: -supported[i].score)
    for i in ranked:
        if i in chosen:
            continue
        gain = supported[i].covered - covered
        if gain or (not chosen and not added):
            added.append(i)
            covered |= gain
        if answer_terms <= covered:
            break
    return added


def _distinct_quotes(
    chosen: list[int], supported: dict[int, SentenceSupport], passages: list[Passage]
) -> list[int]:
    """Overlapping chunks can quote the same sentence twice: keep its first citation."""
    seen: set[tuple[str, Span]] = set()
    distinct = []
    for i in chosen:
        key = (passages[i].chunk.source, supported[i].span)
        if key not in seen:
            seen.add(key)
            distinct.append(i)
    return distinct


def _citation(
    number: int, passage: Passage, support: SentenceSupport, document: Document
) -> Citation:
    start, end = support.span
    return Citation(
        id=number,
        chunk_id=passage.chunk.chunk_id,
        source=passage.chunk.source,
        start=start,
        end=end,
        quote=passage.chunk.slice(support.span),
        score=round(support.score, 4),
        page=document.page_at(start),
    )
