"""Prompt layouts: how the passages reach the model, and what each passage number means.

Three prompt layouts (setting ``prompt_mode``): *retrieval* shows the retrieved passages, read
in full for every question; *reuse* shows them too, best last, every one but the best few
(two by default) appended from its stored KV state (``rag.answer.passage_states``), its first
tokens optionally read anew where it lands; *corpus*, for corpora that
fit a token budget, shows every chunk in document order as one fixed prefix (read once, saved
beside the index by ``rag.llm.kv_state``), so a question costs only its own tokens. Either way
the retriever decides the citation candidates: the model may cite the retrieved passages only.

A plan is a list of segments: text read fresh, or a passage appended from its stored state. The
prompt's tokens are the segments' tokens one after the other; segments end where the model's
pre-tokenizer splits anyway (after a newline, before a space and a word), so they are the tokens
of the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rag.answer.passage_states import PassageStates
from rag.answer.prompts import PromptTemplate, load_template, quoted
from rag.errors import SettingsError
from rag.llm import selftest
from rag.llm.engine import Engine
from rag.retrieval.store import KV_STATES, StoredIndex
from rag.settings import Settings
from rag.types import Chunk, Passage


@dataclass(frozen=True)
class Segment:
    text: str
    stored: bool = False  # a passage appended from its stored state, not read fresh
    fresh: int = 0  # of a stored passage: its first tokens, read anew where it lands


@dataclass(frozen=True)
class PromptPlan:
    numbers: dict[int, Chunk]  # passage number as shown -> its chunk
    segments: tuple[Segment, ...]  # the rendered chat prompt, up to where the reply begins

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)


class AnswerPrompt(Protocol):
    mode: str
    template: PromptTemplate
    states: PassageStates | None  # where stored segments come from

    def plan(self, question: str, passages: list[Passage]) -> PromptPlan: ...

    def fixed_prefix(self) -> list[int]: ...


class RetrievalPrompt:
    """The retrieved passages, numbered 1..k, in the user turn."""

    mode = "retrieval"
    states: PassageStates | None = None

    def __init__(self, engine: Engine, template: PromptTemplate) -> None:
        self.engine = engine
        self.template = template

    def plan(self, question: str, passages: list[Passage]) -> PromptPlan:
        numbers = {n: p.chunk for n, p in enumerate(passages, start=1)}
        shown = "\n\n".join(f"[{n}] {quoted(chunk.text)}" for n, chunk in numbers.items())
        text = self.engine.render(self.template.messages(passages=shown, question=question))
        return PromptPlan(numbers, (Segment(text),))

    def fixed_prefix(self) -> list[int]:
        return self.template.fixed_prefix(self.engine)


class ReusePrompt(RetrievalPrompt):
    """The retrieved passages best last, next to the question, numbered in the order shown. The
    best ``fresh`` are read fresh with the question, so they attend to everything before them
    (passages stored alone do not see each other); the others are appended from their stored
    states, each after its number and its first ``fresh_tokens`` tokens read anew (EPIC: the
    block's first tokens, which every later token of it attends to, see what precedes it)."""

    mode = "reuse"

    def __init__(self, engine: Engine, template: PromptTemplate, states: PassageStates, *,
                 fresh: int, fresh_tokens: int) -> None:
        super().__init__(engine, template)
        self.states = states
        self.fresh = fresh  # the best passages read whole
        self.fresh_tokens = fresh_tokens  # of every other one, its first tokens read anew

    def plan(self, question: str, passages: list[Passage]) -> PromptPlan:
        numbers = {n: p.chunk for n, p in enumerate(reversed(passages), start=1)}
        rendered = self.engine.render(self.template.messages(passages=_SLOT, question=question))
        pending, _, after = rendered.partition(_SLOT)
        segments: list[Segment] = []
        stored = len(numbers) - self.fresh
        for n, chunk in numbers.items():
            if n <= stored:
                segments += [Segment(f"{pending}[{n}]"),
                             Segment(f" {self._shown(chunk)}\n\n", stored=True,
                                     fresh=self.fresh_tokens)]
                pending = ""
            else:
                pending += f"[{n}] {self._shown(chunk)}" + ("\n\n" if n < len(numbers) else "")
        return PromptPlan(numbers, (*segments, Segment(pending + after)))

    def _shown(self, chunk: Chunk) -> str:
        # Inserted after rendering, so defused here (Engine.render does it for the rest).
        return self.engine.defused(quoted(chunk.text))


# Where the passages go in the rendered prompt (no document or question contains it).
_SLOT = "\x00passages\x00"


class CorpusPrompt:
    """Every chunk, in document order and numbered, then the question: the same layout as the
    retrieval prompt with the whole corpus as its passages, so everything up to the question is
    one fixed prefix."""

    mode = "corpus"
    states: PassageStates | None = None

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
        return PromptPlan(retrieved, (Segment(self.engine.render(messages)),))

    def fixed_prefix(self) -> list[int]:
        return self.template.fixed_prefix(self.engine, passages=self.corpus)


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
    ``corpus_max_tokens``), else the retrieval or reuse layout; all with the same template."""
    template = load_template(settings.prompt, settings.prompts_dir)
    if settings.prompt_mode == "retrieval":
        return RetrievalPrompt(engine, template)
    if settings.prompt_mode == "reuse":
        return reuse_layout(engine, template, index, settings)
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


def reuse_layout(engine: Engine, template: PromptTemplate, index: StoredIndex,
                 settings: Settings) -> ReusePrompt:
    if not engine.can_shift:
        raise SettingsError(f"{engine.name}'s KV cache cannot be shifted, so stored passage "
                            "states cannot be reused: use RAG_PROMPT_MODE=retrieval")
    states = PassageStates(engine, index.path / KV_STATES, model=engine.model.identity,
                           template=template.version, build=selftest.build_id(),
                           max_bytes=settings.passage_states_mb << 20)
    return ReusePrompt(engine, template, states, fresh=settings.reuse_fresh_passages,
                       fresh_tokens=settings.reuse_fresh_tokens)
