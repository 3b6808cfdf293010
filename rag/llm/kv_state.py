"""Saved KV prefixes: a fixed prompt prefix is read once and kept on disk beside the index.

Reading the whole bundled article into the model takes seconds; its KV state is the same for
every question as long as the index, the model file, the template and the llama.cpp build are
the same. So the state of a prefix is written to ``<index>/kv/<name>.kv`` with a key file
``<name>.json`` naming those four fingerprints and the prefix's token hash. A state file is
loaded only when its key matches exactly and the tokens stored in it equal the prefix; anything
else (another index, model, template or build, a damaged or half-written file) is refused, the
prefix is read afresh and the file rewritten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.files import write_atomically
from rag.llm.engine import Engine, KvSequence


def prefix_key(tokens: Sequence[int], *, index_fingerprint: str, model: str,
               template: str, build: str) -> dict[str, Any]:
    return {
        "index": index_fingerprint,
        "model": model,
        "template": template,
        "llama_build": build,
        "tokens": len(tokens),
        "tokens_sha256": token_digest(tokens),
    }


def token_digest(tokens: Sequence[int]) -> str:
    """The sha256 of a token list: what a saved state is keyed or named by."""
    return hashlib.sha256(json.dumps(list(tokens)).encode()).hexdigest()


def prepare(engine: Engine, seq: KvSequence, tokens: Sequence[int], folder: Path, name: str,
            key: dict[str, Any]) -> str:
    """Make ``seq`` start with ``tokens``: from the cache or the saved state when it matches
    ``key``, else by reading them; a state not saved yet is saved. Returns what happened."""
    state, key_file = folder / f"{name}.kv", folder / f"{name}.json"
    refusal = _refusal(key_file, key)
    if seq.tokens[:len(tokens)] == list(tokens):
        if refusal is None:
            return "cached"
        engine.truncate(seq, len(tokens))
        done = "cached"
    elif refusal is None and engine.load(seq, state, tokens):
        return "loaded"
    else:
        engine.truncate(seq, 0)
        engine.extend(seq, tokens)
        done = "read"
    try:
        _save(engine, seq, state, key_file, key)
    except OSError as exc:
        return f"{done} ({refusal or 'no saved state'}); not saved: {exc}"
    return f"{done} and saved ({refusal or 'state did not load'})"


def _refusal(key_file: Path, key: dict[str, Any]) -> str | None:
    """Why a saved state must not be used, or None if its key matches."""
    try:
        saved = json.loads(key_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no saved state"
    except (OSError, ValueError) as exc:
        return f"unreadable key file: {exc}"
    differing = sorted(k for k in key.keys() | saved.keys() if key.get(k) != saved.get(k))
    return f"saved for another {', '.join(differing)}" if differing else None


def _save(engine: Engine, seq: KvSequence, state: Path, key_file: Path,
          key: dict[str, Any]) -> None:
    state.parent.mkdir(parents=True, exist_ok=True)
    key_file.unlink(missing_ok=True)  # no key points at a state being replaced
    write_atomically(state, lambda partial: engine.save(seq, partial))
    key_file.write_text(json.dumps(key, indent=2), encoding="utf-8")
