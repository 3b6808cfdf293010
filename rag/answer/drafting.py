"""Grounded generation: passages + question -> the model's draft answer and cited passages.

The reply is JSON, ``{"found": true, "answer": "...", "cite": [4]}``, but the model writes only
what is free in it; the loop writes the rest, each fixed part as one batched read
(``rag.llm.engine``):

1. the prompt, ``{"found":`` and, speculatively, `` true, "answer": "`` are read in one batch. The
   logits at ``{"found":`` give P(found) (" true" against " false"); below one half the model says
   "not found" and generation stops there, so a refusal costs no decoding at all.
2. The answer text is decoded greedily until an unescaped quote, an end token or the token
   budget, and streams through ``on_delta``. Answers are mostly copied from the passages, so each
   step also reads a guess of the next tokens: what followed the answer's last tokens where they
   occur in the prompt (prompt-lookup decoding). The logits at each guessed token say whether
   greedy decoding would have chosen it; the longest run it would have is kept, the rest dropped
   from the cache, so the answer is the greedy one in fewer steps. Beside it, in the same steps, the
   model's next likeliest first tokens are each continued greedily on a sequence of their own
   that shares the prompt's cells (``BRANCHES``): other answers the model nearly gave.
3. ``", "cite": [`` is read in one batch; passage numbers are then chosen among valid ones only.

Every answer the model could have closed is a **candidate**: the greedy answer, each branch, and
each shorter answer the greedy one passes through where the model might have closed the string
there (a prefix ending at a word, scored by the probability of the closing quote at that point,
which the greedy steps' logits already hold). ``rag.decision`` chooses among them.

The reply is parseable by construction; no grammar is compiled. Spans and quotes are never
generated: the citation checker computes them afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from rag.answer.layouts import AnswerPrompt, PromptPlan
from rag.answer.prompts import PromptTemplate
from rag.guard import NO_GUARD, Guard
from rag.llm.engine import (
    KvSequence,
    Logits,
    SequenceReader,
    choice_probability,
    first_token_ids,
    token_logprob,
    tokens_logprob,
)
from rag.types import Chunk, Passage

DeltaCallback = Callable[[str], None]
MAX_CITED = 3
FOUND_KEY = '{"found":'
ANSWER_OPENING = ' true, "answer": "'
CITE_OPENING = '", "cite": ['
# The forced parts of the reply and the passage numbers, beyond the answer's own token budget.
REPLY_TOKENS = 32
# Other first tokens continued beside the greedy answer: at most this many, each at least this
# likely, each at most BRANCH_TOKENS long.
BRANCHES = 3
BRANCH_MIN_P = 0.05
BRANCH_TOKENS = 32
# Shorter answers the greedy one passes through, the likeliest first.
PREFIXES = 3
MAX_CANDIDATES = 1 + PREFIXES + BRANCHES
# Prompt lookup: the answer's last tokens (at most this many) looked up in the prompt.
LOOKUP_NGRAM = 3


@dataclass(frozen=True)
class Candidate:
    """An answer the model gave or could have closed, with its probability under the model."""

    text: str
    origin: str  # "greedy", "prefix" (of the greedy answer) or "branch" (another first token)
    logprob: float  # log-probability of its tokens, the closing quote included
    tokens: int  # its tokens, the closing quote included


@dataclass(frozen=True)
class Draft:
    """What the model said, before any checking."""

    found: bool
    answer: str
    cited: list[Chunk]  # the passages it cited, in its order
    found_probability: float  # P(" true") against P(" false") where it chose
    answer_logprob: float | None  # mean log-probability of the answer's tokens; None if none
    candidates: list[Candidate]  # the greedy answer first; none when not found
    prompt_tokens: int
    answer_tokens: int  # tokens of the answer text, each one decode step
    completion_tokens: int  # answer and passage-number tokens the model chose
    decode_calls: int  # llama_decode calls, batched segments included
    decode_steps: int  # calls that read a single token


@dataclass
class _Writer:
    """One answer being decoded greedily on a sequence of its own."""

    seq: KvSequence
    origin: str
    scanner: JsonStringScanner = field(default_factory=lambda: JsonStringScanner())
    logprobs: list[float] = field(default_factory=list)  # each token read into the answer
    closing: list[float] = field(default_factory=list)  # log P(closing quote) before each one
    texts: list[str] = field(default_factory=list)  # the answer's text before each token
    done: bool = False
    closed: bool = False  # ended by its closing quote (not by the budget or an end token)


@dataclass(eq=False)
class Drafter(SequenceReader):
    """Writes the model's reply on its own KV sequence: P(found), the answer, the citations;
    the branches on sequences of their own (``branch_seqs``)."""

    prompt: AnswerPrompt
    max_answer_tokens: int
    branch_seqs: tuple[KvSequence, ...] = ()
    lookahead: int = 0  # tokens guessed per greedy step from the prompt; 0 decodes one a step
    # The last prompt planned: (question, chunk ids), its plan and tokens (one slot, one thread).
    _last_plan: tuple[tuple[str, tuple[str, ...]], PromptPlan, list[list[int]]] | None = field(
        default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        engine = self.engine
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
    def name(self) -> str:
        return f"answer-{self.prompt.mode}"

    @property
    def template(self) -> PromptTemplate:
        return self.prompt.template

    @cached_property
    def prefix(self) -> list[int]:
        """The tokens every answer prompt of this layout starts with: kept in the cache."""
        return self.prompt.fixed_prefix()

    def claim(self, question: str, passages: list[Passage]) -> int:
        """The context the reply to ``question`` over ``passages`` may take, prompt included."""
        _, pieces = self._planned(question, passages)
        branches = len(self.branch_seqs) * BRANCH_TOKENS  # their prompt cells are shared
        return (sum(map(len, pieces)) + self.max_answer_tokens + REPLY_TOKENS + branches
                + self.lookahead)

    def generate(self, question: str, passages: list[Passage],
                 on_delta: DeltaCallback | None = None, guard: Guard = NO_GUARD) -> Draft:
        plan, pieces = self._planned(question, passages)
        before = (self.engine.stats.calls, self.engine.stats.steps)
        answer, cited, answer_tokens, cite_tokens = "", [], 0, 0
        logprobs: list[float] = []
        candidates: list[Candidate] = []
        with self.engine.beyond(self.seq, self.prefix):
            head = self._read_stored(plan, pieces, guard) + pieces[-1]
            verdict, first = self.engine.sync(self.seq, head + self._opening,
                                              (len(head) - 1, -1), guard)
            p_found = choice_probability(verdict, self._true, self._false)
            found_probability = 0.5 if p_found is None else p_found
            if found_probability >= 0.5:
                writers = self._write(first, head, on_delta, guard)
                greedy = writers[0]
                logprobs = greedy.logprobs
                answer_tokens = len(logprobs)
                numbers, cite_tokens = self._cite(greedy.scanner.pending, set(plan.numbers),
                                                  guard)
                answer, cited = greedy.scanner.text().strip(), [plan.numbers[n] for n in numbers]
                candidates = _candidates(writers)
        return Draft(
            found=found_probability >= 0.5,
            answer=answer,
            cited=cited,
            found_probability=found_probability,
            answer_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
            candidates=candidates,
            prompt_tokens=len(head),
            answer_tokens=answer_tokens,
            completion_tokens=answer_tokens + cite_tokens,
            decode_calls=self.engine.stats.calls - before[0],
            decode_steps=self.engine.stats.steps - before[1],
        )

    def _planned(self, question: str,
                 passages: list[Passage]) -> tuple[PromptPlan, list[list[int]]]:
        """The prompt of ``question`` over ``passages`` and its tokens, rendered and tokenized
        once: the budget's last claim is the plan the draft reads."""
        key = (question, tuple(p.chunk.chunk_id for p in passages))
        if self._last_plan is None or self._last_plan[0] != key:
            plan = self.prompt.plan(question, passages)
            self._last_plan = (key, plan, self._tokens(plan))
        return self._last_plan[1], self._last_plan[2]

    def _tokens(self, plan: PromptPlan) -> list[list[int]]:
        """The tokens of each segment of ``plan``, ``{"found":`` added to the last."""
        pieces = [self.engine.tokenize(segment.text) for segment in plan.segments]
        pieces[-1] += self.engine.tokenize(FOUND_KEY)
        return pieces

    def _read_stored(self, plan: PromptPlan, pieces: list[list[int]], guard: Guard) -> list[int]:
        """Every stored passage of ``plan`` into the sequence from its state, with the fresh
        text between it and what the sequence holds (the fixed prefix, then what was appended
        before it); returns the tokens of every segment but the last. Fresh text after the last
        stored passage is left for the caller's read."""
        done: list[int] = []
        for segment, tokens in zip(plan.segments[:-1], pieces, strict=False):
            if segment.stored and self.prompt.states is not None:
                self.prompt.states.append(self.seq, tokens, len(self.prefix), guard,
                                          lead=done[len(self.seq.tokens):], fresh=segment.fresh)
            done += tokens
        return done

    @cached_property
    def _closers(self) -> npt.NDArray[np.intp]:
        """The tokens that close the answer string: their piece starts with a quote."""
        engine = self.engine
        return np.array([t for t in range(engine.n_vocab) if engine.piece(t)[:1] == b'"'],
                        dtype=np.intp)

    def _write(self, logits: Logits, prompt: list[int], on_delta: DeltaCallback | None,
               guard: Guard) -> list[_Writer]:
        """The greedy answer (streamed through ``on_delta``) and the branches, decoded side by
        side from the logits of the answer's first token; the greedy writer first. The token
        that closes each answer is not read."""
        greedy = _Writer(self.seq, "greedy")
        writers, tokens = [greedy], [int(np.argmax(logits))]
        for seq, token in zip(self.branch_seqs, self._branch_tokens(logits), strict=False):
            writers.append(_Writer(seq, "branch"))
            tokens.append(token)
        self.engine.fork(self.seq, [w.seq for w in writers[1:]])
        current = [logits] * len(writers)
        written: list[int] = []  # the greedy answer's tokens, for the lookup
        try:
            while True:
                reads: list[tuple[int, list[int]]] = []  # writer, tokens to read
                for i, (writer, token) in enumerate(zip(writers, tokens, strict=True)):
                    if not writer.done and self._feed(writer, token, current[i], on_delta):
                        guess = []
                        if i == 0:
                            written.append(token)
                            guess = prompt_lookup(prompt, written, self.lookahead)
                        reads.append((i, [token, *guess]))
                if not reads:
                    break
                rows = self.engine.extend_each(
                    [(writers[i].seq, read, range(len(read))) for i, read in reads], guard)
                for (i, read), read_rows in zip(reads, rows, strict=True):
                    writer = writers[i]
                    writer.scanner.read()
                    kept = self._accept(writer, read[1:], read_rows, on_delta)
                    if rejected := len(read) - 1 - kept:
                        self.engine.truncate(writer.seq, len(writer.seq.tokens) - rejected)
                    if i == 0:
                        written += read[1:1 + kept]
                    current[i] = read_rows[kept]
                    tokens[i] = int(np.argmax(current[i]))
        finally:
            self.engine.clear(*(w.seq for w in writers[1:]))
        return writers

    def _accept(self, writer: _Writer, guess: list[int], rows: list[Logits],
                on_delta: DeltaCallback | None) -> int:
        """How many guessed tokens greedy decoding would have chosen, each fed to ``writer``
        (``rows[j]``: the logits after the read's j-th token); stops where the answer ends."""
        for j, token in enumerate(guess):
            if int(np.argmax(rows[j])) != token or not self._feed(writer, token, rows[j],
                                                                  on_delta):
                return j
            writer.scanner.read()
        return len(guess)

    def _feed(self, writer: _Writer, token: int, logits: Logits,
              on_delta: DeltaCallback | None) -> bool:
        """Add ``token`` to ``writer``'s answer; False when the answer ends before it is read."""
        budget = self.max_answer_tokens if writer.origin == "greedy" else BRANCH_TOKENS
        if len(writer.logprobs) >= budget or self.engine.is_end(token):
            writer.done = True
            return False
        writer.texts.append(writer.scanner.text())
        writer.closing.append(tokens_logprob(logits, self._closers))
        delta = writer.scanner.feed(self.engine.piece(token))
        if delta and on_delta and writer.origin == "greedy":
            on_delta(delta)
        if writer.scanner.closed:
            writer.done = writer.closed = True
            return False
        writer.logprobs.append(token_logprob(logits, token))
        return True

    def _branch_tokens(self, logits: Logits) -> list[int]:
        """The likeliest first tokens after the greedy one that start an answer (not a quote
        or an end), each at least BRANCH_MIN_P likely."""
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        ranked = np.argsort(-probabilities)[1:BRANCHES * 4 + 1]
        closers = set(self._closers.tolist())
        return [int(t) for t in ranked
                if probabilities[t] >= BRANCH_MIN_P and int(t) not in closers
                and not self.engine.is_end(int(t))][:len(self.branch_seqs)]

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


def prompt_lookup(prompt: list[int], written: list[int], size: int) -> list[int]:
    """Up to ``size`` tokens that followed the longest tail of ``written`` (at most
    LOOKUP_NGRAM tokens) where it first occurs in ``prompt``; [] when no tail occurs."""
    if size <= 0:
        return []
    for n in range(min(LOOKUP_NGRAM, len(written)), 0, -1):
        tail = written[-n:]
        for start in range(len(prompt) - n):
            if prompt[start] == tail[0] and prompt[start:start + n] == tail:
                return prompt[start + n:start + n + size]
    return []


def _candidates(writers: list[_Writer]) -> list[Candidate]:
    """Every answer the writers give or pass through, the greedy one first, each text once."""
    greedy, *branches = writers
    found: list[Candidate] = []
    if greedy.closed:
        found.append(_whole(greedy, "greedy"))
    elif greedy.logprobs:  # cut by the budget: it has no closing quote to score
        found.append(Candidate(greedy.scanner.text().strip(), "greedy",
                               sum(greedy.logprobs), len(greedy.logprobs)))
    found += _prefixes(greedy)[:PREFIXES]
    found += [_whole(b, "branch") for b in branches if b.closed]
    seen: set[str] = set()
    unique = []
    for candidate in found:
        key = " ".join(candidate.text.lower().split())
        if key and key not in seen:
            seen.add(key)
            unique.append(candidate)
    return unique


def _whole(writer: _Writer, origin: str) -> Candidate:
    return Candidate(writer.scanner.text().strip(), origin,
                     sum(writer.logprobs) + writer.closing[-1], len(writer.logprobs) + 1)


def _prefixes(writer: _Writer) -> list[Candidate]:
    """Shorter answers the writer passed through: its text before each token that starts a new
    word, closed there, likeliest first."""
    found = []
    texts = [*writer.texts[:len(writer.logprobs)], writer.scanner.text()]
    for i in range(1, len(writer.logprobs)):
        text, following = texts[i], texts[i + 1][len(texts[i]):]
        if following[:1].isspace() or following[:1] in ",;:(":
            logprob = sum(writer.logprobs[:i]) + writer.closing[i]
            found.append(Candidate(text.strip().rstrip(",;:"), "prefix", logprob, i + 1))
    return sorted(found, key=lambda c: -c.logprob)


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
