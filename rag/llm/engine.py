"""The decoding engine: one llama.cpp model, one context, named KV sequences, our own steps.

llama-cpp-python's completion API re-reads what it cannot match, decodes every token one step at
a time (forced JSON keys included) and keeps one sequence per context, so a verifier needed a
second loaded model. Here the project drives llama.cpp itself:

* ``extend`` reads any number of tokens into a sequence in batched ``llama_decode`` calls and
  returns the logits of exactly the positions asked for (no ``logits_all``);
* ``sync`` makes a sequence hold a given token list, keeping the longest prefix already in the KV
  cache, so fixed prompt prefixes are read once per process (``rag.llm.kv_state`` saves them);
* one unified KV cache holds a sequence per name the owner asked for (the answer, its
  verification, follow-up rewriting): one set of weights for all of them;
* ``save_block`` / ``insert_block`` keep a block of tokens' KV cells on disk and append them to
  a sequence later, shifted to where they land (RoPE K-shift), so a passage read once is not
  read again (``rag.answer.passage_states``);
* with ``slots`` above one, that many requests run at once, each in its own thread on sequences
  of its own (``n_ctx`` tokens of context each), and their reads share ``llama_decode`` calls
  (``rag.llm.scheduler``); ``share`` gives a sequence another's prefix cells without reading it.
  Every llama.cpp call is made under one lock: the context is not re-entrant.

Every llama.cpp call is preceded by the request's ``Guard`` check (``rag.guard``), so a
cancelled or overdue request stops within one step. llama_cpp is imported on construction
only: ``rag.llm.selftest`` must have run the build in a child before it is loaded into this process.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.errors import ContextFullError, InputError
from rag.guard import NO_GUARD, Guard
from rag.llm.scheduler import Part, Scheduler

Logits = npt.NDArray[np.single]
_MARKUP = re.compile(r"[<>\[\]|]")  # a special token spelled like a word is left alone
PIECE_BYTES = 256  # longer than any token of the models we run


@dataclass
class DecodeStats:
    calls: int = 0  # llama_decode calls (each batched segment is one)
    tokens: int = 0  # tokens read
    steps: int = 0  # calls that read a single token: one decode step each


@dataclass
class KvSequence:
    """What one sequence of the KV cache holds, token by token."""

    seq_id: int
    name: str
    tokens: list[int] = field(default_factory=list)
    shared: int = 0  # leading tokens whose cells another sequence holds too (no cells of its own)


@dataclass(frozen=True)
class ModelChoice:
    """A generator file, resolved and verified once (``rag.llm.loading.choose_model``)."""

    path: Path
    name: str  # display name, and the key of per-model choices
    identity: str  # what distinguishes the weights, for keys of saved KV states


class Engine:
    def __init__(self, model: ModelChoice, *, sequences: Sequence[str], n_ctx: int,
                 n_batch: int, n_threads: int, n_threads_batch: int,
                 flash_attn: bool = False, slots: int = 1, prefill_slice: int = 0) -> None:
        """``sequences``: the names of the KV sequences its users will hold, one each, for all
        ``slots`` (requests at once) together; ``n_ctx``: the context of one request."""
        import llama_cpp
        from llama_cpp import _internals, _logger, llama_chat_format

        _logger.set_verbose(False)  # llama.cpp's own log: errors only
        self._lib: Any = llama_cpp
        _init_backend(llama_cpp)
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self._model = _internals.LlamaModel(path_model=str(model.path), params=model_params,
                                            verbose=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx * slots, n_batch, n_batch
        params.n_threads, params.n_threads_batch = n_threads, n_threads_batch
        # One more sequence than asked for: the scratch space of save_block and insert_block.
        params.n_seq_max, params.kv_unified = len(sequences) + 1, True
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self._context = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        self._ctx = self._context.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, len(sequences) + 1)
        self.model = model
        self.name = model.name
        self.n_ctx = n_ctx  # one request's budget (rag.answer.budget)
        self.capacity = n_ctx * slots
        self.n_batch = n_batch
        self.n_vocab = self._model.n_vocab()
        self.stats = DecodeStats()
        self._sequences = {name: KvSequence(i, name) for i, name in enumerate(sequences)}
        self._scratch = KvSequence(len(sequences), "scratch")
        self.can_shift = bool(llama_cpp.llama_memory_can_shift(self._memory))
        self._formatter = _chat_formatter(self._model, llama_chat_format)
        self._llama = threading.RLock()
        self._scratch_lock = threading.Lock()
        self.scheduler = (Scheduler(self._decode_parts, n_batch, prefill_slice or n_batch)
                          if slots > 1 else None)

    # ---- text ---------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text``; chat-template markers such as <|im_start|> are special tokens."""
        return list(self._model.tokenize(text.encode(), False, True))

    def piece(self, token: int) -> bytes:
        """The bytes of one token (a multi-byte character may span several tokens)."""
        # A buffer per call: requests decode in threads of their own (continuous batching), and
        # one shared buffer let a thread read another's piece.
        buffer = ctypes.create_string_buffer(PIECE_BYTES)
        size = self._lib.llama_token_to_piece(self._model.vocab, token, buffer, PIECE_BYTES, 0,
                                              False)
        return buffer.raw[:max(size, 0)]

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode(errors="ignore")

    def is_end(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._model.vocab, token))

    def render(self, messages: list[dict[str, str]]) -> str:
        """The model's own chat template applied to ``messages``, ready for the reply. What a
        message spells of the vocabulary's special tokens (a document, a question, a turn) is
        broken up first: only the template's own markers are special."""
        safe = [{**message, "content": self.defused(message["content"])}
                for message in messages]
        return str(self._formatter(messages=safe).prompt)

    def defused(self, text: str) -> str:
        """``text`` with every special token's spelling broken by a space ("</s>" -> "< /s>"),
        so tokenizing it yields plain tokens only (prompts are tokenized with markers on)."""
        for marker in self.markers:
            if marker in text:
                text = text.replace(marker, f"{marker[0]} {marker[1:]}")
        return text

    @cached_property
    def special_ids(self) -> frozenset[int]:
        """Control and user-defined tokens: chat markers, end of text, tool and FIM marks."""
        lib, special = self._lib, self._lib.LLAMA_TOKEN_ATTR_CONTROL | (
            self._lib.LLAMA_TOKEN_ATTR_USER_DEFINED)
        return frozenset(t for t in range(self.n_vocab)
                         if lib.llama_vocab_get_attr(self._model.vocab, t) & special)

    @cached_property
    def markers(self) -> tuple[str, ...]:
        """How the special tokens are spelled (those that look like markup), longest first."""
        spelled = {self._model.token_get_text(t) for t in self.special_ids}
        return tuple(sorted((m for m in spelled if len(m) >= 3 and _MARKUP.search(m)),
                            key=len, reverse=True))

    # ---- the KV cache -------------------------------------------------------------------

    def sequence(self, name: str) -> KvSequence:
        """The KV sequence reserved for ``name`` when the engine was made."""
        return self._sequences[name]

    @property
    def used(self) -> int:
        """Cells the sequences hold together (shared cells counted once, where they were read)."""
        return sum(len(s.tokens) - s.shared for s in (*self._sequences.values(), self._scratch))

    def extend(self, seq: KvSequence, tokens: Sequence[int], outputs: Sequence[int] = (-1,),
               guard: Guard = NO_GUARD) -> list[Logits]:
        """Read ``tokens`` after what ``seq`` holds, ``n_batch`` at a time; return the logits at
        ``outputs`` (indices into ``tokens``, negative from the end), in that order."""
        if not tokens:
            raise ValueError("nothing to read")
        wanted = sorted({i % len(tokens) for i in outputs})
        self._check_room(len(tokens))
        if self.scheduler is not None:
            rows = self.scheduler.read(seq, tokens, wanted, guard)
            return [rows[i % len(tokens)] for i in outputs]
        rows = {}
        for start in range(0, len(tokens), self.n_batch):
            guard.check()
            chunk = list(tokens[start:start + self.n_batch])
            marks = tuple(i - start for i in wanted if start <= i < start + len(chunk))
            for mark, row in zip(marks, self._decode_parts([(seq, chunk, marks)])[0],
                                 strict=True):
                rows[start + mark] = row
        return [rows[i % len(tokens)] for i in outputs]

    def extend_each(self, reads: Sequence[tuple[KvSequence, Sequence[int], Sequence[int]]],
                    guard: Guard = NO_GUARD) -> list[list[Logits]]:
        """Read each sequence's own tokens after what it holds, side by side in shared
        ``llama_decode`` calls (a batch of candidate answers, one token each, costs about one
        step); for each read, the logits at its ``outputs`` (indices into its tokens, negative
        from the end), in that order."""
        if not reads or not all(tokens for _, tokens, _ in reads):
            raise ValueError("nothing to read")
        self._check_room(sum(len(tokens) for _, tokens, _ in reads))
        parts: list[Part] = [(seq, list(tokens), tuple(sorted({i % len(tokens) for i in outputs})))
                             for seq, tokens, outputs in reads]
        if self.scheduler is not None:
            found = self.scheduler.read_many(parts, guard)
        else:
            found = []
            for batch in _batches([tokens for _, tokens, _ in parts], self.n_batch):
                guard.check()
                for i, rows in zip(batch, self._decode_parts([parts[i] for i in batch]),
                                   strict=True):
                    found.append(dict(zip(parts[i][2], rows, strict=True)))
        return [[rows[i % len(tokens)] for i in outputs]
                for rows, (_, tokens, outputs) in zip(found, reads, strict=True)]

    def fork(self, source: KvSequence, targets: Sequence[KvSequence]) -> None:
        """Make each target hold what ``source`` holds, its cells shared, not read again."""
        for target in targets:
            self.share(source, target, len(source.tokens))

    def clear(self, *sequences: KvSequence) -> None:
        for seq in sequences:
            self.truncate(seq, 0)

    def sync(self, seq: KvSequence, tokens: Sequence[int], outputs: Sequence[int] = (-1,),
             guard: Guard = NO_GUARD) -> list[Logits]:
        """Make ``seq`` hold ``tokens``, reading only what differs from its cached prefix."""
        keep = _common_prefix(seq.tokens, tokens)
        earliest = min(i % len(tokens) for i in outputs)
        keep = min(keep, earliest)  # logits exist only for positions read now
        self.truncate(seq, keep)
        return self.extend(seq, tokens[keep:], [i % len(tokens) - keep for i in outputs], guard)

    @contextmanager
    def beyond(self, seq: KvSequence, prefix: Sequence[int]) -> Iterator[None]:
        """Reads on ``seq`` past ``prefix`` (a fixed prompt prefix), dropped again afterwards.
        A prefix ``seq`` lacks is read first on its own, as when it is warmed up. Every question
        then starts from the same cache state, so its numbers do not depend on the question
        before it (the cells a read lands in and the batch split change the last digits)."""
        if seq.tokens[:len(prefix)] != list(prefix):
            self.sync(seq, prefix)
        self.truncate(seq, len(prefix))
        try:
            yield
        finally:
            self.truncate(seq, len(prefix))

    def truncate(self, seq: KvSequence, length: int) -> None:
        if length < len(seq.tokens):
            with self._llama:
                self._lib.llama_memory_seq_rm(self._memory, seq.seq_id, length, -1)
            del seq.tokens[length:]
            seq.shared = min(seq.shared, length)

    def share(self, source: KvSequence, target: KvSequence, length: int) -> None:
        """Make ``target`` hold the first ``length`` tokens of ``source``: their cells are
        shared (``llama_memory_seq_cp``), not read again."""
        with self._llama:
            self._lib.llama_memory_seq_rm(self._memory, target.seq_id, -1, -1)
            self._lib.llama_memory_seq_cp(self._memory, source.seq_id, target.seq_id, 0, length)
        target.tokens = list(source.tokens[:length])
        target.shared = length

    def save(self, seq: KvSequence, path: Path) -> None:
        array = (self._lib.llama_token * len(seq.tokens))(*seq.tokens)
        with self._llama:
            written = self._lib.llama_state_seq_save_file(self._ctx, str(path).encode(),
                                                          seq.seq_id, array, len(seq.tokens))
        if not written:
            raise OSError(f"llama.cpp could not write {path}")

    def load(self, seq: KvSequence, path: Path, expected: Sequence[int]) -> bool:
        """Load a saved sequence into ``seq``; True only if it holds exactly ``expected``."""
        self.truncate(seq, 0)
        capacity = len(expected) + 1
        array = (self._lib.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        with self._llama:
            read = self._lib.llama_state_seq_load_file(self._ctx, str(path).encode(),
                                                       seq.seq_id, array, capacity,
                                                       ctypes.byref(count))
            if read and list(array[:count.value]) == list(expected):
                seq.tokens = list(expected)
                return True
            self._lib.llama_memory_seq_rm(self._memory, seq.seq_id, 0, -1)
        return False

    def save_block(self, seq: KvSequence, after: int, tokens: Sequence[int], path: Path,
                   guard: Guard = NO_GUARD) -> None:
        """Read ``tokens`` as if they followed the first ``after`` tokens of ``seq`` and save
        only their own cells (positions ``after`` onwards) to ``path``; ``seq`` is untouched."""
        with self._scratch_lock:
            self.share(seq, self._scratch, after)
            try:
                self.extend(self._scratch, tokens, guard=guard)
                with self._llama:
                    self._lib.llama_memory_seq_rm(self._memory, self._scratch.seq_id, 0, after)
                self._scratch.tokens, self._scratch.shared = list(tokens), 0
                self.save(self._scratch, path)
            finally:
                self._clear_scratch()

    def insert_block(self, seq: KvSequence, path: Path, tokens: Sequence[int], origin: int,
                     lead: Sequence[int] = (), fresh: int = 0,
                     guard: Guard = NO_GUARD) -> bool:
        """Append the block saved at ``path`` (read at positions from ``origin``) to ``seq``,
        shifted to follow what ``seq`` holds. ``lead`` (text before the block) and the block's
        first ``fresh`` tokens are read anew in one call, so they attend to everything before
        them; the rest comes from the file. False, and ``seq`` untouched, unless the file loads
        and holds exactly ``tokens``."""
        self._check_room(len(lead) + len(tokens))
        scratch, lib, fresh = self._scratch, self._lib, min(fresh, len(tokens))
        with self._scratch_lock:
            if not self.load(scratch, path, tokens):
                return False
            try:
                if read := [*lead, *tokens[:fresh]]:
                    self.extend(seq, read, guard=guard)
                shift = len(seq.tokens) - fresh - origin
                with self._llama:
                    if fresh:
                        lib.llama_memory_seq_rm(self._memory, scratch.seq_id, origin,
                                                origin + fresh)
                    if shift:
                        lib.llama_memory_seq_add(self._memory, scratch.seq_id, -1, -1, shift)
                    lib.llama_memory_seq_cp(self._memory, scratch.seq_id, seq.seq_id, -1, -1)
            finally:
                self._clear_scratch()
        seq.tokens.extend(tokens[fresh:])
        return True

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._context.close()  # type: ignore[no-untyped-call]
        self._model.close()  # type: ignore[no-untyped-call]

    # ---- internals ----------------------------------------------------------------------

    def _check_room(self, adding: int) -> None:
        # The budget (rag.answer.budget) plans so this never fires; llama.cpp would fail less
        # clearly if it did.
        if self.used + adding > self.capacity:
            raise ContextFullError(
                f"the prompt needs {self.used + adding} tokens of context but the model holds "
                f"{self.capacity} (setting RAG_N_CTX); ask a shorter question or use fewer "
                "passages"
            )

    def _decode_parts(self, parts: list[Part]) -> list[list[Logits]]:
        """One ``llama_decode`` of every part (a sequence, its next tokens, the rows wanted);
        the logits of each part's rows."""
        batch, at = self._batch, 0
        for seq, tokens, marks in parts:
            assert isinstance(seq, KvSequence)
            start = len(seq.tokens)
            for i, token in enumerate(tokens):
                batch.token[at] = token
                batch.pos[at] = start + i
                batch.n_seq_id[at] = 1
                batch.seq_id[at][0] = seq.seq_id
                batch.logits[at] = i in marks
                at += 1
        batch.n_tokens = at
        with self._llama:
            status = self._lib.llama_decode(self._ctx, batch)
            if status != 0:
                raise ContextFullError(f"llama.cpp could not read {at} more tokens "
                                       f"(llama_decode returned {status})")
            rows, first = [], 0
            for _, tokens, marks in parts:
                rows.append([self._logits(first + mark) for mark in marks])
                first += len(tokens)
        for seq, tokens, _ in parts:
            assert isinstance(seq, KvSequence)
            seq.tokens.extend(tokens)
        self.stats.calls += 1
        self.stats.tokens += at
        self.stats.steps += at == 1
        return rows

    def _clear_scratch(self) -> None:
        with self._llama:
            self._lib.llama_memory_seq_rm(self._memory, self._scratch.seq_id, -1, -1)
        self._scratch.tokens, self._scratch.shared = [], 0

    def _logits(self, row: int) -> Logits:
        pointer = self._lib.llama_get_logits_ith(self._ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()


@dataclass(eq=False)
class SequenceReader:
    """A component that reads with the engine on a KV sequence of its own."""

    engine: Engine
    seq: KvSequence


def choice_probability(logits: Logits, chosen: list[int], other: list[int]) -> float | None:
    """P(chosen tokens) against P(other tokens) at one step; None if the model gives neither
    any weight."""
    weights = np.exp(logits - logits.max())
    yes, no = weights[chosen].sum(), weights[other].sum()
    return float(yes / (yes + no)) if yes + no > 0 else None


def token_logprob(logits: Logits, token: int) -> float:
    """log P(token) at one step (a log-softmax over the vocabulary)."""
    top = float(logits.max())
    return float(logits[token]) - top - float(np.log(np.exp(logits - top).sum()))


def tokens_logprob(logits: Logits, tokens: npt.NDArray[np.intp]) -> float:
    """log P(any of ``tokens``) at one step (a JSON string's closing quote has several)."""
    top = float(logits.max())
    total = float(np.log(np.exp(logits - top).sum()))
    return float(np.log(np.exp(logits[tokens] - top).sum() + 1e-30)) - total


def shared_prefix(engine: Engine, first: list[dict[str, str]],
                  second: list[dict[str, str]]) -> list[int]:
    """The tokens two chat prompts start with: rendered with fields that differ everywhere they
    can, this is the fixed prefix every prompt of a template shares."""
    a, b = (engine.tokenize(engine.render(messages)) for messages in (first, second))
    return a[:_common_prefix(a, b)]


def first_token_ids(engine: Engine, words: tuple[str, ...]) -> list[int]:
    """The ids of the first token of each word, for reading a choice off the logits."""
    return sorted({engine.tokenize(w)[0] for w in words})


def _batches(reads: list[list[int]], size: int) -> Iterator[list[int]]:
    """The indices of the reads grouped in order into batches of at most ``size`` tokens; a
    read longer than ``size`` is refused (a candidate's read is a few tokens)."""
    batch: list[int] = []
    used = 0
    for i, tokens in enumerate(reads):
        if len(tokens) > size:
            raise ValueError(f"a read of {len(tokens)} tokens does not fit one batch of {size}")
        if used + len(tokens) > size:
            yield batch
            batch, used = [], 0
        batch.append(i)
        used += len(tokens)
    if batch:
        yield batch


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


_backend_ready = False


def _init_backend(llama_cpp: Any) -> None:
    global _backend_ready
    if not _backend_ready:
        llama_cpp.llama_backend_init()
        _backend_ready = True


def _chat_formatter(model: Any, llama_chat_format: Any) -> Any:
    metadata = model.metadata()
    template = metadata.get("tokenizer.chat_template")
    if not template:
        raise InputError(f"{model.path_model} has no chat template; use an instruction model")

    def token_text(token: int) -> str:
        return str(model.token_get_text(token)) if token != -1 else ""

    return llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=token_text(model.token_eos()),
        bos_token=token_text(model.token_bos()), add_generation_prompt=True,
    )
