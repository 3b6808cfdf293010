"""The llama.cpp self-test: run a model once in a child process before trusting it in ours.

A llama.cpp build compiled for instructions the CPU lacks does not fail politely: the process
dies by a signal (SIGILL on the first batched prefill of an AMX build) and takes the service
with it. So before a process loads a model into itself, a child loads it, reads a short prompt
in one batch and decodes a few tokens. If the child dies, the parent raises
``LlamaRuntimeError`` with one line saying what crashed, the likely cause and the command that
fixes it. A passing verdict is cached beside the model file, keyed by the llama.cpp build and the
model file, so each build is tested once per model.

``python -m rag.llm.selftest MODEL THREADS PREFILL DECODE`` is the child; it prints one JSON line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.errors import LlamaRuntimeError, ModelNotFoundError

TIMEOUT_S = 300.0
QUICK_PREFILL, QUICK_DECODE = 64, 8
REBUILD = "`make llama-rebuild` (.venv/bin/python -m rag.llm.llama_build install --force)"
_TEXT = (
    "The quick brown fox jumps over the lazy dog while the committee reviews the annual report "
    "on regional security cooperation, trade figures and the schedule of the next meeting. "
)


@dataclass(frozen=True)
class ProbeResult:
    """What one child run measured (or the one-line diagnosis when it failed)."""

    model: str
    ok: bool
    message: str
    load_s: float
    prefill_tokens: int
    prefill_tokens_per_s: float
    decode_tokens: int
    decode_tokens_per_s: float
    system_info: str

    @classmethod
    def failed(cls, model: str, message: str) -> ProbeResult:
        return cls(model, False, message, 0.0, 0, 0.0, 0, 0.0, "")


def probe(
    model_path: Path,
    name: str,
    threads: int,
    prefill: int = QUICK_PREFILL,
    decode: int = QUICK_DECODE,
    extra_path: Path | None = None,
    timeout_s: float = TIMEOUT_S,
) -> ProbeResult:
    """Load ``model_path`` in a child, prefill ``prefill`` tokens in one batch, decode ``decode``.

    ``extra_path`` is put first on the child's PYTHONPATH (the benchmark uses it to run another
    build of llama-cpp-python side by side)."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path),
                                                          env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "rag.llm.selftest", str(model_path), str(threads),
               str(prefill), str(decode)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env,
                                timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return ProbeResult.failed(name, f"llama.cpp self-test of {name} did not finish in "
                                  f"{timeout_s:.0f} s (a hung or far too slow build); rebuild: "
                                  f"{REBUILD}")
    if result.returncode < 0:
        return ProbeResult.failed(name, crash_message(name, -result.returncode))
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return ProbeResult.failed(name, f"llama.cpp self-test of {name} failed: {detail}")
    return ProbeResult(name, True, "", **json.loads(result.stdout.strip().splitlines()[-1]))


def crash_message(name: str, signum: int) -> str:
    """One line: what crashed, the likely cause, the command that fixes it."""
    try:
        signame = signal.Signals(signum).name
    except ValueError:
        signame = f"signal {signum}"
    if signum == signal.SIGILL:
        cause = ("the installed llama-cpp-python uses CPU instructions this machine cannot run "
                 "(a -march=native or AMX build, or one made on another machine)")
    elif signum == signal.SIGKILL:
        cause = "it was killed, most likely for lack of memory"
    else:
        cause = "the llama-cpp-python build or the model file is broken"
    return (f"llama.cpp crashed with {signame} while running {name} in a self-test: {cause}; "
            f"fix: {REBUILD}, then `rag doctor`")


def ensure_runs(model_path: Path, name: str, threads: int) -> None:
    """Raise LlamaRuntimeError unless this build ran this model in a child; cached per build."""
    key = {"build": build_id(), "model": _file_key(model_path)}
    verdict = _verdict_path(model_path)
    try:
        if json.loads(verdict.read_text()).get("key") == key:
            return
    except (OSError, ValueError):
        pass
    result = probe(model_path, name, threads)
    if not result.ok:
        raise LlamaRuntimeError(result.message)
    try:
        verdict.write_text(json.dumps({"key": key, "result": asdict(result)}))
    except OSError:
        pass  # a read-only model folder: test again next time


def build_id() -> str:
    """A fingerprint of the installed llama_cpp package and its compiled libraries; found
    without importing it (importing a broken build must happen in a child only)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("llama-cpp-python is not installed: run `make install`")
    root = Path(next(iter(spec.submodule_search_locations)))
    digest = hashlib.sha256(str(root).encode())
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix in {".so", ".py"} or ".so." in path.name):
            digest.update(f"{path.relative_to(root)} {_file_key(path)}".encode())
    return digest.hexdigest()[:16]


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _verdict_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".selftest")


def _child(model_path: str, threads: int, prefill: int, decode: int) -> dict[str, Any]:
    import llama_cpp
    import numpy as np

    started = time.perf_counter()
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=max(512, prefill + decode + 8),
                          n_batch=512, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    text = _TEXT * (prefill // 20 + 2)
    tokens = llm.tokenize(text.encode(), add_bos=False)[:prefill]
    llm.eval(tokens[:8])  # pages the weights in, so the timing below is the steady state
    llm.n_tokens = 0
    loaded = time.perf_counter()
    llm.eval(tokens)
    prefilled = time.perf_counter()
    vocab = llm.n_vocab()
    for _ in range(decode):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                       shape=(vocab,))
        llm.eval([int(logits.argmax())])
    decoded = time.perf_counter()
    return {
        "load_s": round(loaded - started, 3),
        "prefill_tokens": len(tokens),
        "prefill_tokens_per_s": round(len(tokens) / (prefilled - loaded), 2),
        "decode_tokens": decode,
        "decode_tokens_per_s": round(decode / (decoded - prefilled), 2) if decode else 0.0,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
    }


if __name__ == "__main__":
    path, n_threads, n_prefill, n_decode = sys.argv[1:5]
    print(json.dumps(_child(path, int(n_threads), int(n_prefill), int(n_decode))))
