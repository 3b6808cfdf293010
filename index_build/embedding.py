"""Embedding: chunk texts and their quotable spans -> L2-normalized vectors."""

from __future__ import annotations

from rag.retrieval.embedder import Embedder, Vectors
from rag.types import Chunk

# Below this many texts a progress bar is noise.
PROGRESS_MIN_CHUNKS = 256


def embed_chunks(chunks: list[Chunk], embedder: Embedder, progress: bool) -> Vectors:
    texts = [chunk.text for chunk in chunks]
    return embedder.encode(texts, progress=progress and len(texts) >= PROGRESS_MIN_CHUNKS)


def embed_spans(chunks: list[Chunk], embedder: Embedder, progress: bool) -> Vectors:
    """One row per quotable span of each chunk (``Chunk.spans``), chunk after chunk: the
    citation checker compares them with the question instead of embedding them per question."""
    texts = [chunk.slice(span) for chunk in chunks for span, _ in chunk.spans()]
    return embedder.encode(texts, progress=progress and len(texts) >= PROGRESS_MIN_CHUNKS)


def span_counts(chunks: list[Chunk]) -> int:
    """How many span rows ``chunks`` have together."""
    return sum(len(chunk.spans()) for chunk in chunks)
