"""Grounded generation: passages + question -> the model's draft answer and cited passages.

The reply is JSON, ``{"found": true, "answer": "...", "cite": [4]}``, but the model writes only
what is free in it; the loop writes the rest, each fixed part as one batched read
(``rag.decoding``):

1. the prompt, ``{"found":`` and, speculatively, `` true, "answer": "`` are read in one batch. The
   logits at ``{"found":`` give P(found) (" true" against " false"); below one half the model says
   "not found" and generation stops there, so a refusal costs no decoding at all.
2. The answer text is decoded greedily, one token a step, until an unescaped quote, an end token
   or the token budget, and streams through ``on_delta``.
3. ``", "cite": [`` is read in one batch; passage numbers are then chosen among valid ones only.

The reply is parseable by construction; no grammar is compiled. Spans and quotes are never
generated: the citation checker computes them afterwards.

Two prompt layouts (setting ``prompt_mode``): *retrieval* (the default) shows the retrieved
passages; *corpus*, for corpora that fit a token budget, shows every chunk in document order as
one fixed prefix (read once, saved beside the index by ``rag.kv_state``), so a question costs
only its own tokens. Either way the retriever decides the citation candidates: the model may
cite the retrieved passages only.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag.decoding import (
    ANSWER_SEQ,
    ContextFullError,
    Engine,
    Logits,
    choice_probability,
    first_token_ids,
    shared_prefix,
)
from rag.guard import NO_GUARD, Guard
from rag.prompts import PromptTemplate, quoted
from rag.types import Chunk, Passage

DeltaCallback = Callable[[str], None]
MAX_CITED = 3
FOUND_KEY = '{"found":'
ANSWER_OPENING = ' true, "answer": "'
CITE_OPENING = '", "cite": ['
# Candidate tokens tried, best first, for an answer that must copy the passages.
COPY_CANDIDATES = 40
# The forced parts of the reply and the passage numbers, beyond the answer's own token budget.
REPLY_TOKENS = 32


@dataclass(frozen=True)
class Draft:
    """What the model said, before any checking."""

    found: bool
    answer: str
    cited: list[Chunk]  # the passages it cited, in its order
    found_probability: float  # P(" true") against P(" false") where it chose
    prompt_tokens: int
    answer_tokens: int  # tokens of the answer text, each one decode step
    completion_tokens: int  # answer and passage-number tokens the model chose
    decode_calls: int  # llama_decode calls, batched segments included
    decode_steps: int  # calls that read a single token


@dataclass(frozen=True)
class PromptPlan:
    text: str  # the rendered chat prompt, up to where the reply begins
    numbers: dict[int, Chunk]  # passage number as shown -> its chunk


class AnswerPrompt(Protocol):
    mode: str
    template: PromptTemplate

    def plan(self, question: str, passages: list[Passage]) -> PromptPlan: ...

    def fixed_prefix(self) -> list[int]: ...

    def shown(self, passages: list[Passage]) -> list[str]:
        """The texts the model reads for a question with these retrieved passages."""


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

    def shown(self, passages: list[Passage]) -> list[str]:
        return [p.chunk.text for p in passages]


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

    def shown(self, passages: list[Passage]) -> list[str]:
        return [chunk.text for chunk in self.numbers.values()]

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


class Generator:
    def __init__(self, engine: Engine, prompt: AnswerPrompt, max_answer_tokens: int,
                 extractive: bool = False) -> None:
        self.engine = engine
        self.prompt = prompt
        self.max_answer_tokens = max_answer_tokens
        self.extractive = extractive
        self._close = engine.tokenize('"')[0]
        self.seq = engine.sequences[ANSWER_SEQ]
        self._true = first_token_ids(engine, ("true", " true"))
        self._false = first_token_ids(engine, ("false", " false"))
        self._opening = engine.tokenize(ANSWER_OPENING)
        self._next_number = engine.tokenize(", ")
        self._choices = {engine.tokenize(d)[0]: d for d in "0123456789"}
        for end in ("]", "]}"):  # the model ends a list either way
            if len(ids := engine.tokenize(end)) == 1:
                self._choices[ids[0]] = "]"
        self._choices[self._next_number[0]] = ","

    @property
    def template(self) -> PromptTemplate:
        return self.prompt.template

    def fit(self, question: str, passages: list[Passage],
            reserve: int) -> tuple[list[Passage], list[Passage]]:
        """The best passages whose prompt leaves room for the reply and ``reserve`` more tokens
        of context (the verification), and the passages dropped for lack of room, lowest rank
        first. ContextFullError when not even one passage fits with this question."""
        room = self.engine.n_ctx - reserve - self.max_answer_tokens - REPLY_TOKENS
        for keep in range(len(passages), 0, -1):
            plan = self.prompt.plan(question, passages[:keep])
            if len(self.engine.tokenize(plan.text)) <= room:
                return passages[:keep], passages[keep:]
        raise ContextFullError(
            f"the question is {len(self.engine.tokenize(question))} tokens long: with the "
            f"instructions and one passage it does not fit the model's context of "
            f"{self.engine.n_ctx} tokens (setting RAG_N_CTX); ask a shorter question"
        )

    def generate(self, question: str, passages: list[Passage],
                 on_delta: DeltaCallback | None = None, guard: Guard = NO_GUARD) -> Draft:
        plan = self.prompt.plan(question, passages)
        before = (self.engine.stats.calls, self.engine.stats.steps)
        head = self.engine.tokenize(plan.text + FOUND_KEY)
        verdict, first = self.engine.sync(self.seq, head + self._opening, (len(head) - 1, -1),
                                          guard)
        p_found = choice_probability(verdict, self._true, self._false)
        found_probability = 0.5 if p_found is None else p_found
        answer, cited, answer_tokens, cite_tokens = "", [], 0, 0
        if found_probability >= 0.5:
            copy_from = CopyConstraint(self.prompt.shown(passages)) if self.extractive else None
            scanner, answer_tokens = self._answer_text(first, on_delta, guard, copy_from)
            numbers, cite_tokens = self._cite(scanner.pending, set(plan.numbers), guard)
            answer, cited = scanner.text().strip(), [plan.numbers[n] for n in numbers]
        return Draft(
            found=found_probability >= 0.5,
            answer=answer,
            cited=cited,
            found_probability=found_probability,
            prompt_tokens=len(head),
            answer_tokens=answer_tokens,
            completion_tokens=answer_tokens + cite_tokens,
            decode_calls=self.engine.stats.calls - before[0],
            decode_steps=self.engine.stats.steps - before[1],
        )

    def _answer_text(self, logits: Logits, on_delta: DeltaCallback | None, guard: Guard,
                     copy_from: CopyConstraint | None) -> tuple[JsonStringScanner, int]:
        """Greedy decoding of the answer string (of the best tokens that keep it a copy of the
        passages, with ``copy_from``); the token that closes it is not read."""
        scanner = JsonStringScanner()
        steps = 0
        while steps < self.max_answer_tokens:
            token = self._choose(logits, scanner, copy_from)
            if self.engine.is_end(token):
                break
            delta = scanner.feed(self.engine.piece(token))
            if delta and on_delta:
                on_delta(delta)
            if scanner.closed:
                break
            logits = self.engine.extend(self.seq, [token], guard=guard)[0]
            scanner.read()
            steps += 1
        return scanner, steps

    def _choose(self, logits: Logits, scanner: JsonStringScanner,
                copy_from: CopyConstraint | None) -> int:
        if copy_from is None:
            return int(np.argmax(logits))
        for token in np.argsort(-logits)[:COPY_CANDIDATES].tolist():
            if self.engine.is_end(token):
                continue
            text, closed = scanner.peek(self.engine.piece(token))
            if copy_from.allows(text) and (text.strip() or not closed):
                return int(token)
        return self._close  # no good continuation is in the passages: the answer ends here

    def _cite(self, pending: str, valid: set[int], guard: Guard) -> tuple[list[int], int]:
        """Passage numbers, digit by digit, each choice restricted to what keeps the list valid."""
        logits = self.engine.extend(self.seq, self.engine.tokenize(pending + CITE_OPENING),
                                    guard=guard)[0]
        chosen: list[int] = []
        current, tokens = "", 0
        while options := self._cite_options(current, valid - set(chosen), len(chosen)):
            token = max(options, key=lambda t: float(logits[t]))
            tokens += 1
            if options[token] == "]":
                break
            if options[token] == ",":
                chosen.append(int(current))
                current = ""
                logits = self.engine.extend(self.seq, self._next_number, guard=guard)[0]
                continue
            current += options[token]
            logits = self.engine.extend(self.seq, [token], guard=guard)[0]
        if current:
            chosen.append(int(current))
        return chosen, tokens

    def _cite_options(self, current: str, unused: set[int], cited: int) -> dict[int, str]:
        """The tokens that may come next in the list: digits that still lead to an unused valid
        number, then "," or "]" once a number is complete; {} when the list must end."""
        names = {str(n) for n in unused}
        complete = current in names
        if complete and cited + 1 == MAX_CITED:
            return {}
        options = {t: c for t, c in self._choices.items()
                   if c.isdigit() and any(n.startswith(current + c) for n in names)}
        if complete or (not current and not cited):
            options |= {t: c for t, c in self._choices.items() if c == "]"}
        if complete and len(names) > 1:
            options |= {t: c for t, c in self._choices.items() if c == ","}
        if set(options.values()) == {"]"}:
            return {}
        return options


class CopyConstraint:
    """Keeps an answer a copy of the passages: a stretch of their text, whatever its case,
    spacing or quote style. An invention then cannot be written at all, and the answer's source
    is known before any checking."""

    def __init__(self, texts: list[str]) -> None:
        self._source = "\n".join(_folded(text) for text in texts)

    def allows(self, answer: str) -> bool:
        return _folded(answer.lstrip()) in self._source


_FOLDS = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": "-", "–": "-"})


def _folded(text: str) -> str:
    return " ".join(text.translate(_FOLDS).casefold().split()) + (" " if text[-1:].isspace()
                                                                     else "")


class JsonStringScanner:
    """Reads a JSON string value as the model writes it, one token piece at a time: where it
    ends (the first unescaped quote), its decoded text so far, and the part of the last piece not
    yet read into the KV cache."""

    def __init__(self) -> None:
        self.raw = b""
        self.closed = False
        self._escaping = False
        self._read = 0  # raw bytes already in the KV cache
        self._shown = 0  # characters already handed out as deltas

    def feed(self, piece: bytes) -> str:
        """Add one piece; returns the newly decodable text."""
        for i, byte in enumerate(piece):
            if self._escaping:
                self._escaping = False
            elif byte == 0x5C:  # backslash
                self._escaping = True
            elif byte in (0x22, 0x0A, 0x0D):  # a quote ends it; so does a raw newline (invalid)
                self.closed = True
                piece = piece[:i]
                break
        self.raw += piece
        text = self.text()
        delta, self._shown = text[self._shown:], len(text)
        return delta

    def peek(self, piece: bytes) -> tuple[str, bool]:
        """The decoded value and whether it is closed, were ``piece`` fed; nothing changes."""
        trial = copy.copy(self)
        trial.feed(piece)
        return trial.text(), trial.closed

    def read(self) -> None:
        """Everything fed so far is now in the KV cache."""
        self._read = len(self.raw)

    @property
    def pending(self) -> str:
        """Answer text from the closing piece, which was not read into the KV cache."""
        return self.raw[self._read:].decode(errors="ignore")

    def text(self) -> str:
        """The decoded value so far, up to the last complete character and escape."""
        raw = _complete_escapes(self.raw.decode(errors="ignore"))
        try:
            return str(json.loads(f'"{raw}"'))
        except ValueError:
            return raw  # an invalid escape: keep the characters as written


def _complete_escapes(raw: str) -> str:
    """``raw`` cut before a trailing escape sequence that is not complete yet."""
    i = 0
    while i < len(raw):
        if raw[i] != "\\":
            i += 1
            continue
        length = 6 if raw[i + 1 : i + 2] == "u" else 2
        if i + length > len(raw):
            return raw[:i]
        i += length
    return raw
