"""The index build: read -> chunk -> embed -> write, skipped when nothing changed."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from index_build.chunking import CHUNKER_VERSION, TOKEN_ENCODING, chunk_documents
from index_build.embedding import embed_chunks
from index_build.reading import read_documents
from index_build.writing import build_lock, dense_index_kind, write_index
from rag import index_store
from rag.errors import IndexMismatchError, IndexNotFoundError, InputError
from rag.model_loading import EMBED_MODEL_NAME, Embedder
from rag.settings import BUNDLED_CORPUS, Settings
from rag.types import Chunk, Document


@dataclass(frozen=True)
class BuildResult:
    status: Literal["built", "unchanged"]
    manifest: index_store.Manifest
    index_dir: Path


def build_index(
    settings: Settings,
    paths: Sequence[Path] = (),
    embedder: Embedder | None = None,
    progress: bool = False,
) -> BuildResult:
    """Index ``paths`` (the bundled article when empty) into ``settings.index_dir``.

    Rebuilding an unchanged corpus with unchanged settings is a no-op.
    """
    documents = read_documents(list(paths) or [BUNDLED_CORPUS])
    with build_lock(settings.index_dir):
        fingerprint = _fingerprint(documents, settings)
        current = _current_manifest(settings.index_dir)
        if current is not None and current.fingerprint == fingerprint:
            return BuildResult("unchanged", current, settings.index_dir)
        embedder = embedder or Embedder(settings.threads)
        started = time.perf_counter()
        chunks = chunk_documents(documents, settings.chunk_tokens, settings.chunk_overlap)
        if not chunks:
            raise InputError("the documents contain no text to index")
        vectors = embed_chunks(chunks, embedder, progress)
        manifest = _manifest(documents, chunks, settings, fingerprint, embedder.dim, started)
        write_index(settings.index_dir, manifest, documents, chunks, vectors)
    return BuildResult("built", manifest, settings.index_dir)


def ensure_default_index(settings: Settings, announce: Callable[[str], None]) -> None:
    """A newcomer's first question just works: index the bundled article on first use.

    Only at the default location: a missing custom RAG_INDEX_DIR is more likely a typo.
    """
    if settings.index_dir != Settings().index_dir or _current_manifest(settings.index_dir):
        return
    announce(f"No index at {settings.index_dir} yet: indexing the bundled article first…")
    build_index(settings)


def _fingerprint(documents: list[Document], settings: Settings) -> str:
    """Everything that determines the index content, hashed."""
    recipe = {
        "format": index_store.FORMAT_VERSION,
        "embed_model": EMBED_MODEL_NAME,
        "token_encoding": TOKEN_ENCODING,
        "chunker": CHUNKER_VERSION,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "ann_threshold": settings.ann_threshold,
        "documents": sorted((d.doc_id, d.sha256) for d in documents),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _current_manifest(index_dir: Path) -> index_store.Manifest | None:
    try:
        return index_store.read_manifest(index_dir)
    except (IndexNotFoundError, IndexMismatchError):
        return None


def _manifest(
    documents: list[Document],
    chunks: list[Chunk],
    settings: Settings,
    fingerprint: str,
    dim: int,
    started: float,
) -> index_store.Manifest:
    per_document: dict[str, int] = {}
    for chunk in chunks:
        per_document[chunk.source] = per_document.get(chunk.source, 0) + 1
    return index_store.Manifest(
        format_version=index_store.FORMAT_VERSION,
        fingerprint=fingerprint,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_seconds=round(time.perf_counter() - started, 3),
        embed_model=EMBED_MODEL_NAME,
        embed_dim=dim,
        token_encoding=TOKEN_ENCODING,
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        dense_index=dense_index_kind(len(chunks), settings.ann_threshold),
        chunk_count=len(chunks),
        documents=[
            index_store.DocumentInfo(
                doc_id=d.doc_id,
                path=d.path,
                sha256=d.sha256,
                chars=len(d.text),
                chunks=per_document.get(d.doc_id, 0),
            )
            for d in documents
        ],
    )
