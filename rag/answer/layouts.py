"""Prompt layouts: how the passages reach the model, and what each passage number means.

Two prompt layouts (setting ``prompt_mode``): *retrieval* (the default) shows the retrieved
passages; *corpus*, for corpora that fit a token budget, shows every chunk in document order as
one fixed prefix (read once, saved beside the index by ``rag.llm.kv_state``), so a question costs
only its own tokens. Either way the retriever decides the citation candidates: the model may
cite the retrieved passages only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rag.answer.prompts import PromptTemplate, load_template, quoted
from rag.errors import SettingsError
from rag.llm.engine import Engine, shared_prefix
from rag.retrieval.store import StoredIndex
from rag.settings import Settings
from rag.types import Chunk, Passage


@dataclass(frozen=True)
class PromptPlan:
    text: str  # the rendered chat prompt, up to where the reply begins
    numbers: dict[int, Chunk]  # passage number as shown -> its chunk


class AnswerPrompt(Protocol):
    mode: str
    template: PromptTemplate

    def plan(self, question: str, passages: list[Passage]) -> PromptPlan: ...

    def fixed_prefix(self) -> list[int]: ...


class RetrievalPrompt:
    """The retrieved passages, numbered 1..k, in the user turn."""

    mode = "retrieval"

    def __init__(self, engine: Engine, template: PromptTemplate) -> None:
        self.engine = engine
        self.template = template

    def plan(self, question: str, passages: list[Passage]) -> PromptPlan:
        numbers = {n: p.chunk for n, p in enumerate(passages, start=1)}
        shown = "\n\n".join(f"[{n}] {quoted(chunk.text)}" for n, chunk in numbers.items())
        text = self.engine.render(self.template.messages(passages=shown, question=question))
        return PromptPlan(text, numbers)

    def fixed_prefix(self) -> list[int]:
        return shared_prefix(self.engine,
                             self.template.messages(passages="A", question="A"),
                             self.template.messages(passages="B", question="B"))


class CorpusPrompt:
    """Every chunk, in document order and numbered, then the question: the same layout as the
    retrieval prompt with the whole corpus as its passages, so everything up to the question is
    one fixed prefix."""

    mode = "corpus"

    def __init__(self, engine: Engine, template: PromptTemplate, chunks: list[Chunk]) -> None:
        self.engine = engine
        self.template = template
        self.corpus, self.numbers = format_corpus(chunks)
        self._number_of = {chunk.chunk_id: n for n, chunk in self.numbers.items()}

    def plan(self, question: str, passages: list[Passage]) -> PromptPlan:
        # The retriever decides what may be cited: the model reads everything but chooses
        # among the retrieved passages' numbers only.
        retrieved = {self._number_of[p.chunk.chunk_id]: p.chunk for p in passages
                     if p.chunk.chunk_id in self._number_of}
        messages = self.template.messages(passages=self.corpus, question=question)
        return PromptPlan(self.engine.render(messages), retrieved)

    def fixed_prefix(self) -> list[int]:
        return shared_prefix(
            self.engine,
            self.template.messages(passages=self.corpus, question="A"),
            self.template.messages(passages=self.corpus, question="B"),
        )


def format_corpus(chunks: list[Chunk]) -> tuple[str, dict[int, Chunk]]:
    """Every chunk numbered from 1, grouped by document; text a chunk shares with the one before
    it (the chunking overlap) is shown once, so the documents read in order without repeats."""
    lines: list[str] = []
    numbers: dict[int, Chunk] = {}
    source, shown_until = None, 0
    for n, chunk in enumerate(chunks, start=1):
        if chunk.source != source:
            lines.append(f"{'' if source is None else chr(10)}Document: {chunk.source}")
            source, shown_until = chunk.source, 0
        start = next((s for s, _ in chunk.sentences if s >= shown_until), None)
        if start is None:
            continue  # every sentence of it was shown with the chunk before
        lines.append(f"[{n}] {quoted(chunk.text[start - chunk.start:].strip())}")
        numbers[n] = chunk
        shown_until = chunk.end
    return "\n".join(lines), numbers


def choose_layout(settings: Settings, engine: Engine, index: StoredIndex) -> AnswerPrompt:
    """The corpus layout when asked for (or, in auto mode, when the whole corpus fits
    ``corpus_max_tokens``), else the retrieval layout; both with the same template."""
    template = load_template(settings.prompt, settings.prompts_dir)
    if settings.prompt_mode == "retrieval":
        return RetrievalPrompt(engine, template)
    chars = sum(d.chars for d in index.manifest.documents)
    # No token is longer than 16 characters here: a cheap bound before tokenizing it all.
    if settings.prompt_mode == "auto" and chars > 16 * settings.corpus_max_tokens:
        return RetrievalPrompt(engine, template)
    corpus = CorpusPrompt(engine, template, index.chunks)
    size = len(engine.tokenize(corpus.corpus))
    if size <= settings.corpus_max_tokens:
        return corpus
    if settings.prompt_mode == "corpus":
        raise SettingsError(
            f"the corpus is {size} tokens, above corpus_max_tokens ({settings.corpus_max_tokens})"
            ": raise RAG_CORPUS_MAX_TOKENS (and RAG_N_CTX) or use RAG_PROMPT_MODE=retrieval"
        )
    return RetrievalPrompt(engine, template)
