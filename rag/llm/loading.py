"""Which GGUF file to load, and loading it: a self-test in a child first, then the engine.

Nothing here may touch the network: the files come from the model packages (``model_files``).
"""

from __future__ import annotations

from rag.errors import ModelNotFoundError
from rag.llm import model_files, selftest
from rag.llm.engine import Engine, ModelChoice
from rag.settings import Settings


def choose_model(settings: Settings) -> ModelChoice:
    """The GGUF file to load: ``model_path`` when set, else the bundled model ``llm`` names."""
    if settings.model_path is not None:
        path = settings.model_path
        if not path.is_file():
            raise ModelNotFoundError(
                f"RAG_MODEL_PATH points at {path}, which is not a file")
        st = path.stat()
        return ModelChoice(path, path.stem,
                           f"{path.resolve()} size:{st.st_size} mtime_ns:{st.st_mtime_ns}")
    spec = model_files.KNOWN_MODELS[settings.llm]
    return ModelChoice(model_files.model_file(spec, settings.model_dir), spec.name,
                       f"{spec.name} sha256:{spec.sha256}")


def load_engine(settings: Settings, model: ModelChoice, sequences: tuple[str, ...],
                slots: int = 1) -> Engine:
    """``model`` on one llama.cpp context with one KV sequence per name in ``sequences``, for
    ``slots`` requests at once."""
    # A build that crashes on this CPU must crash in a child, not in this process (selftest).
    selftest.ensure_runs(model.path, model.name, settings.threads)
    return Engine(model, sequences=sequences, n_ctx=settings.n_ctx,
                  n_batch=settings.n_batch, n_threads=settings.threads,
                  n_threads_batch=settings.batch_threads, flash_attn=settings.flash_attn,
                  slots=slots, prefill_slice=settings.prefill_slice)
