"""A deterministic engine for the unit tier: the real ``Engine`` bookkeeping (sequences, batches,
prefix reuse, stored blocks, the scheduler) over a scripted model instead of llama.cpp.

Tokens are characters (ASCII; a space joins the character after it, so " true" and " false"
start with different tokens) and the chat markers. The model is a function of the text a
sequence holds: ``script(text)`` returns what it would write next, and the logits put 10 on that
continuation's first token, 8 on ``runner_up(text)``'s when given, 0 elsewhere. Stored blocks are
token lists in a file. Nothing here reads a model file.
"""

from __future__ import annotations

import ctypes
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rag.llm.engine import DecodeStats, Engine, KvSequence, Logits, ModelChoice
from rag.llm.scheduler import Part, Scheduler

MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
SPACED = 128  # token SPACED + c is " " + chr(c)
FIRST_MARKER = 256
Script = Callable[[str], str]


class _FakeLlama:
    """The few llama.cpp calls ``Engine`` makes itself: cell bookkeeping is a no-op (the fake
    model reads the tokens, not cells); a state file holds the tokens as JSON."""

    llama_token = ctypes.c_int32

    def llama_memory_seq_rm(self, *_: Any) -> bool:
        return True

    def llama_memory_seq_cp(self, *_: Any) -> None:
        return None

    def llama_memory_seq_add(self, *_: Any) -> None:
        return None

    def llama_state_seq_save_file(self, _ctx: Any, path: bytes, _seq: int, tokens: Any,
                                  count: int) -> int:
        Path(path.decode()).write_text(json.dumps(list(tokens[:count])), encoding="utf-8")
        return 1

    def llama_state_seq_load_file(self, _ctx: Any, path: bytes, _seq: int, tokens: Any,
                                  capacity: int, count: Any) -> int:
        try:
            saved = json.loads(Path(path.decode()).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0
        if len(saved) > capacity:
            return 0
        for i, token in enumerate(saved):
            tokens[i] = token
        count._obj.value = len(saved)
        return 1


class FakeEngine(Engine):
    def __init__(self, script: Script, *, runner_up: Script | None = None,
                 sequences: tuple[str, ...] = ("answer", "verify", "followup"),
                 n_ctx: int = 4096, n_batch: int = 512, slots: int = 1) -> None:
        self.script, self.runner_up = script, runner_up
        self._lib = _FakeLlama()
        self._ctx = self._memory = None
        self.model = ModelChoice(Path("fake.gguf"), "fake", "fake")
        self.name = "fake"
        self.n_ctx, self.capacity, self.n_batch = n_ctx, n_ctx * slots, n_batch
        self.n_vocab = FIRST_MARKER + len(MARKERS)
        self.stats = DecodeStats()
        self._sequences = {name: KvSequence(i, name) for i, name in enumerate(sequences)}
        self._scratch = KvSequence(len(sequences), "scratch")
        self.can_shift = True
        self._llama = threading.RLock()
        self._scratch_lock = threading.Lock()
        self._batch = None
        self.scheduler = Scheduler(self._decode_parts, n_batch, n_batch) if slots > 1 else None

    # ---- text ---------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        tokens: list[int] = []
        i = 0
        while i < len(text):
            marker = next((m for m in MARKERS if text.startswith(m, i)), None)
            if marker is not None:
                tokens.append(FIRST_MARKER + MARKERS.index(marker))
                i += len(marker)
            elif text[i] == " " and i + 1 < len(text) and text[i + 1] not in " <":
                tokens.append(SPACED + _ascii(text[i + 1]))
                i += 2
            else:
                tokens.append(_ascii(text[i]))
                i += 1
        return tokens

    def piece(self, token: int) -> bytes:
        if token >= FIRST_MARKER:
            return MARKERS[token - FIRST_MARKER].encode()
        if token >= SPACED:
            return b" " + bytes([token - SPACED])
        return bytes([token])

    def is_end(self, token: int) -> bool:
        return token == FIRST_MARKER + MARKERS.index("<|endoftext|>")

    def render(self, messages: list[dict[str, str]]) -> str:
        turns = "".join(f"<|im_start|>{m['role']}\n{self.defused(m['content'])}<|im_end|>\n"
                        for m in messages)
        return turns + "<|im_start|>assistant\n"

    @property
    def markers(self) -> tuple[str, ...]:  # type: ignore[override]
        return MARKERS

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()

    # ---- the model ----------------------------------------------------------------------

    def logits_after(self, tokens: list[int]) -> Logits:
        """What the scripted model predicts after ``tokens``."""
        text = self.detokenize(tokens)
        logits = np.zeros(self.n_vocab, dtype=np.single)
        if self.runner_up is not None and (second := self.runner_up(text)):
            logits[self.tokenize(second)[0]] = 8.0
        wanted = self.script(text)
        logits[self.tokenize(wanted)[0] if wanted else self.n_vocab - 1] = 10.0
        return logits

    def _decode_parts(self, parts: list[Part]) -> list[list[Logits]]:
        rows = []
        for seq, tokens, marks in parts:
            assert isinstance(seq, KvSequence)
            base = list(seq.tokens)
            rows.append([self.logits_after(base + list(tokens[:mark + 1])) for mark in marks])
            seq.tokens.extend(tokens)
        read = sum(len(tokens) for _, tokens, _ in parts)
        self.stats.calls += 1
        self.stats.tokens += read
        self.stats.steps += read == 1
        return rows


def _ascii(char: str) -> int:
    return ord(char) if ord(char) < SPACED else ord("?")


def continuing(text: str, reply: str) -> str:
    """What is left of ``reply`` after what the assistant turn that ``text`` ends in holds."""
    written = text.rsplit("<|im_start|>assistant\n", 1)[-1]
    return reply[len(written):] if reply.startswith(written) else ""


def reader_script(answers: dict[str, str], cite: str = "1") -> Script:
    """A model that answers each question of ``answers`` (found when the answer is in its
    prompt), cites passage ``cite`` and says "not found" to any other question."""

    def script(text: str) -> str:
        if text.endswith('{"found":'):
            answer = _asked(text, answers)
            return " true" if answer and answer in text else " false"
        opening = text.rfind('"answer": "')
        cited = text.rfind('"cite": [')
        if cited > opening >= 0:
            return f"{cite}]}}" if text.endswith("[") else "]}"
        if opening >= 0:
            written = text[opening + len('"answer": "'):]
            answer = _asked(text, answers) or ""
            return answer[len(written):] + '"' if answer.startswith(written) else '"'
        return ""

    return script


def _asked(text: str, answers: dict[str, str]) -> str | None:
    """The answer to the last question of ``answers`` the text asks."""
    found = [(text.rfind(q), a) for q, a in answers.items() if q in text]
    return max(found)[1] if found else None
