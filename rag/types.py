"""The records that flow through the pipeline: Question -> Chunk -> Passage -> Trace -> Answer.

A ``Question`` is validated once, where it enters (the CLI, the HTTP routes, the eval harness);
everything after that trusts it.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import msgspec

from rag.errors import InputError

if TYPE_CHECKING:
    from rag.settings import Settings

Span = tuple[int, int]
MAX_TOP_K = 20


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class Question:
    """One question as asked: its text, the conversation before it, and per-request choices."""

    text: str
    top_k: int
    history: tuple[Turn, ...] = ()
    # The least confidence an answer needs (the operating point); None: the setting's.
    min_confidence: float | None = None

    @classmethod
    def checked(cls, text: str, settings: Settings, top_k: int | None = None,
                history: tuple[Turn, ...] | list[Turn] = (),
                min_confidence: float | None = None) -> Question:
        """A question from outside, or InputError saying what is wrong with it."""
        text = text.strip()
        if not text:
            raise InputError("the question is empty")
        if len(text) > settings.max_question_chars:
            raise InputError(
                f"the question is {len(text)} characters long; the limit is "
                f"{settings.max_question_chars} (setting RAG_MAX_QUESTION_CHARS)")
        if top_k is not None and not 1 <= top_k <= MAX_TOP_K:
            raise InputError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
        if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
            raise InputError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        for turn in history:
            if turn.role not in {"user", "assistant"}:
                raise InputError(f"a history turn's role must be user or assistant, not "
                                 f"{turn.role!r}")
        return cls(text, settings.top_k if top_k is None else top_k, tuple(history),
                   min_confidence)


@dataclass(frozen=True)
class Document:
    """A source text as read from disk; spans everywhere are character offsets into ``text``."""

    doc_id: str
    path: str
    text: str
    sha256: str
    # Offsets in ``text`` where each page starts (PDF); empty for formats without pages.
    page_starts: tuple[int, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """The 1-based page that holds character ``offset``; None for formats without pages."""
        if not self.page_starts:
            return None
        return max(1, bisect.bisect_right(self.page_starts, offset))


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences of one document: ``text == document.text[start:end]``."""

    chunk_id: str
    source: str
    start: int
    end: int
    text: str
    # Absolute [start, end) spans of the sentences inside the chunk, for sentence-level quotes.
    sentences: tuple[Span, ...]

    def slice(self, span: Span) -> str:
        """The text of an absolute document span that lies inside this chunk."""
        return self.text[span[0] - self.start : span[1] - self.start]

    def spans(self) -> list[tuple[Span, bool]]:
        """What a citation may quote: each sentence, then each pair of adjacent sentences
        (flagged True). Their embeddings are computed once, when the chunk is indexed."""
        pairs = [(a[0], b[1]) for a, b in itertools.pairwise(self.sentences)]
        return [(span, False) for span in self.sentences] + [(span, True) for span in pairs]


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its fused rank score and its dense cosine similarity."""

    chunk: Chunk
    score: float
    similarity: float

    def body(self) -> PassageBody:
        c = self.chunk
        return PassageBody(chunk_id=c.chunk_id, source=c.source, start=c.start, end=c.end,
                           text=c.text, score=round(self.score, 6))


class PassageBody(msgspec.Struct):
    """A retrieved passage as the API shows it: ``text`` is ``source``'s ``[start:end]``."""

    chunk_id: str
    source: str
    start: int
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class Citation:
    """A verified pointer into a source: ``source_text[start:end] == quote``."""

    id: int
    chunk_id: str
    source: str
    start: int
    end: int
    quote: str
    score: float
    page: int | None  # the 1-based page where the quote starts; None for formats without pages


@dataclass(frozen=True)
class Timings:
    retrieve_s: float = 0.0
    generate_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class CandidateTrace:
    """One candidate answer (``rag.answer.drafting.Candidate``) and what was measured of it."""

    text: str
    origin: str  # "greedy", "prefix" or "branch"
    logprob: float  # its tokens' log-probability under the answer prompt, closing quote included
    tokens: int
    # Its citation check (rag.answer.citations).
    evidence: str = ""  # the supporting sentences' text
    best_support: float = 0.0
    support_citations: list[tuple[str, int, int]] = field(default_factory=list)
    echoes_question: bool = False
    computed: str | None = None  # how a computed answer follows from its sentences
    # Measured when the decision asks (rag.answer.verification): the verifier's P(yes).
    verification: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateTrace:
        spans = [(str(s), int(a), int(b)) for s, a, b in data.get("support_citations", [])]
        return cls(**{**data, "support_citations": spans})


@dataclass(frozen=True)
class Trace:
    """What was measured of one question on its way to an answer or a refusal: all that the
    decision reads (``rag.decision``), so an eval report's traces replay the service's verdicts.
    Fields after ``best_similarity`` exist once the model drafted an answer."""

    question: str  # as retrieved and answered: a follow-up rewritten to stand alone
    best_similarity: float  # cosine similarity of the question and its closest passage
    passages_dropped: list[str] = field(default_factory=list)  # chunk ids that did not fit
    rewrite_s: float = 0.0
    # The model's draft: its greedy answer ("" when it says the passages do not hold one).
    draft: str | None = None
    found_probability: float | None = None  # P(found = true) where the model decided it
    answer_logprob: float | None = None  # mean log-probability of the greedy answer's tokens
    cited: list[str] = field(default_factory=list)  # chunk ids the model cited
    # Every answer the decision may choose, the greedy one first.
    candidates: list[CandidateTrace] = field(default_factory=list)
    # Per question token: log P(token | evidence) - log P(token | no text).
    question_pmi: list[float] | None = None
    # Cost.
    prompt_tokens: int = 0
    answer_tokens: int = 0
    completion_tokens: int = 0
    decode_calls: int = 0
    decode_steps: int = 0

    @property
    def drafted(self) -> bool:
        return self.draft is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        """A recorded trace; a field an older version measured and this one does not is
        dropped. A trace from before candidates (2026-12-06) has its draft as the one."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        if "candidates" in data:
            candidates = [CandidateTrace.from_dict(c) for c in data["candidates"]]
        else:
            candidates = _draft_as_candidate(data)
        return cls(**{**kept, "candidates": candidates})


def _draft_as_candidate(data: dict[str, Any]) -> list[CandidateTrace]:
    """An older trace's draft and its measurements as its only candidate."""
    if not data.get("draft"):
        return []
    tokens = int(data.get("answer_tokens") or 0)
    return [CandidateTrace.from_dict({
        "text": data["draft"], "origin": "greedy",
        "logprob": float(data.get("answer_logprob") or 0.0) * tokens, "tokens": tokens,
        "evidence": data.get("evidence", ""), "best_support": data.get("best_support", 0.0),
        "support_citations": data.get("support_citations", []),
        "echoes_question": data.get("echoes_question", False),
        "verification": data.get("verification")})]


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    passages: list[Passage]
    model: str
    prompt: str
    timings: Timings = field(default_factory=Timings)
    # The estimated probability that the answer is right (rag.decision); None when refused.
    confidence: float | None = None
    # Diagnostics kept out of the JSON contract, for logs and eval reports: which signal refused
    # and why, and everything measured on the way (rag.decision replays from it).
    refusal_reason: str = ""
    trace: Trace | None = None
    # The follow-up question rewritten to stand alone, when it was (rag.answer.followup).
    standalone_question: str | None = None

    def body(self) -> AnswerBody:
        return AnswerBody(
            question=self.question,
            standalone_question=self.standalone_question,
            answer=self.answer,
            refused=self.refused,
            confidence=None if self.confidence is None else round(self.confidence, 4),
            citations=self.citations,
            passages=[p.body() for p in self.passages],
            model=self.model,
            prompt=self.prompt,
            timings=Timings(**{k: round(v, 4) for k, v in asdict(self.timings).items()}),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(msgspec.to_builtins(self.body()))


class AnswerBody(msgspec.Struct):
    """The answer's JSON contract, the one shape the API (and its OpenAPI schema), the streams'
    final event and `rag ask --json` show; diagnostics (the trace) stay out of it."""

    question: str
    standalone_question: str | None  # the follow-up rewritten to stand alone, when it was
    answer: str
    refused: bool
    confidence: float | None  # P(the answer is right); None when refused
    citations: list[Citation]
    passages: list[PassageBody]
    model: str
    prompt: str
    timings: Timings
