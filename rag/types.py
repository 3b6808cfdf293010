"""The records that flow through the pipeline: Chunk -> Passage -> Citation -> Answer."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from typing import Any

Span = tuple[int, int]


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


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its fused rank score and its dense cosine similarity."""

    chunk: Chunk
    score: float
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "chunk_id": c.chunk_id,
            "source": c.source,
            "start": c.start,
            "end": c.end,
            "text": c.text,
            "score": round(self.score, 6),
        }


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
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    passages: list[Passage]
    model: str
    prompt: str
    timings: Timings = field(default_factory=Timings)
    # Diagnostics kept out of the JSON contract, for logs and eval reports: which signal refused
    # (see rag.refusal), and the draft the model wrote before checking.
    refusal_reason: str = ""
    trace: dict[str, Any] = field(default_factory=dict)
    # The follow-up question rewritten to stand alone, when it was (rag.conversation).
    standalone_question: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "answer": self.answer,
            "refused": self.refused,
            "citations": [asdict(c) for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "model": self.model,
            "prompt": self.prompt,
            "timings": {k: round(v, 4) for k, v in asdict(self.timings).items()},
        }
