"""Passage KV states: each passage read once, its KV cells kept on disk, appended to prompts.

Reading the retrieved passages is most of an answer's time. A passage's KV cells depend on what
precedes it; the store keeps each passage's cells as read right after the answer prompt's fixed
prefix, alone, and appends them to a question's prompt shifted to where they land (the RoPE
K-shift of ``Engine.insert_block``). The passages then do not attend to each other, which costs
answers; the layout that uses the store (``rag.answer.layouts.ReusePrompt``) reads the best two
passages fresh, last, beside the question, so they attend to everything before them.

States live in ``<index>/kv/passages-<key hash>/``: one folder per model, template and llama.cpp
build, so a state is never loaded for another one; inside it one file per passage named by the
hash of its tokens, and a state file loads only if the tokens stored in it equal the passage's.
States are computed on first use (a miss costs one read of the passage alone) and written
atomically; replicas sharing an index share the folder. A passage's state is large (the KV cells
of every layer: about 28 KB a token for the default model), so the folder is bounded: beyond
``max_bytes`` the states used longest ago are deleted (a load marks a state used). The memory
tier is the operating system's page cache; nothing is held in the process.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.files import write_atomically
from rag.guard import NO_GUARD, Guard
from rag.llm.engine import Engine, KvSequence
from rag.llm.kv_state import token_digest


@dataclass
class StoreStats:
    loaded: int = 0  # passages appended from a stored state
    computed: int = 0  # passages read alone and stored (first use)
    stored_tokens: int = 0  # tokens of the passages stored
    unsaved: int = 0  # passages read in place because their state could not be written
    evicted: int = 0  # states deleted to keep the store within its bound


class PassageStates:
    def __init__(self, engine: Engine, root: Path, *, model: str, template: str, build: str,
                 max_bytes: int = 2 << 30) -> None:
        self.engine = engine
        self.key = {"model": model, "template": template, "llama_build": build}
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()
        self.folder = root / f"passages-{digest[:16]}"
        self.max_bytes = max_bytes
        self.stats = StoreStats()
        self._size: int | None = None  # bytes stored, counted on the first write

    def append(self, seq: KvSequence, tokens: Sequence[int], context: int,
               guard: Guard = NO_GUARD, *, lead: Sequence[int] = (), fresh: int = 0) -> None:
        """Append ``tokens`` to ``seq`` from their stored state, computed first (as read after
        the first ``context`` tokens of ``seq``, the fixed prefix) when there is none. ``lead``
        and the first ``fresh`` of ``tokens`` are read anew before the stored rest
        (``Engine.insert_block``)."""
        path = self.folder / f"{token_digest(tokens)}.kv"
        guard.check()
        if self.engine.insert_block(seq, path, tokens, context, lead, fresh, guard):
            self.stats.loaded += 1
            _touch(path)
            return
        try:
            self._store(seq, tokens, context, path, guard)
        except OSError:  # a read-only or full disk: slower, never wrong
            self.stats.unsaved += 1
            self.engine.extend(seq, [*lead, *tokens], guard=guard)
            return
        self.stats.computed += 1
        self.stats.stored_tokens += len(tokens)
        if not self.engine.insert_block(seq, path, tokens, context, lead, fresh, guard):
            raise OSError(f"llama.cpp could not load the passage state it just wrote: {path}")

    def size_bytes(self) -> int:
        """What the stored states take on disk."""
        return sum(st.st_size for _, st in self._files())

    def _files(self) -> list[tuple[Path, os.stat_result]]:
        """The stored states, used longest ago first (another replica may delete any)."""
        found = []
        for path in self.folder.glob("*.kv"):
            try:
                found.append((path, path.stat()))
            except FileNotFoundError:
                continue
        return sorted(found, key=lambda item: item[1].st_mtime)

    def _store(self, seq: KvSequence, tokens: Sequence[int], context: int, path: Path,
               guard: Guard) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.exists():  # for people: the folder's name is the hash of this
            key_file.write_text(json.dumps(self.key, indent=2), encoding="utf-8")
        write_atomically(path, lambda partial: self.engine.save_block(seq, context, tokens,
                                                                      partial, guard))
        if self._size is None:
            self._size = self.size_bytes()
        else:
            self._size += path.stat().st_size
        if self._size > self.max_bytes:
            self._evict(keep=path)

    def _evict(self, keep: Path) -> None:
        """The states used longest ago deleted until the folder holds 90% of ``max_bytes``."""
        files = self._files()
        self._size = sum(st.st_size for _, st in files)
        for old, st in files:
            if self._size <= 0.9 * self.max_bytes:
                break
            if old != keep:
                old.unlink(missing_ok=True)
                self._size -= st.st_size
                self.stats.evicted += 1


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only store still serves; it only evicts less well
