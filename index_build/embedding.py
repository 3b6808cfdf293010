"""Embedding: chunk texts -> L2-normalized vectors with the sentence embedder."""

from __future__ import annotations

import itertools

from rag.retrieval.embedder import Embedder, Vectors
from rag.types import Chunk

# Below this many chunks a progress bar is noise.
PROGRESS_MIN_CHUNKS = 256


def embed_chunks(chunks: list[Chunk], embedder: Embedder, progress: bool) -> Vectors:
    texts = [chunk.text for chunk in chunks]
    return embedder.encode(texts, progress=progress and len(texts) >= PROGRESS_MIN_CHUNKS)


def split_vectors(vectors: Vectors, counts: list[int]) -> list[Vectors]:
    """Consecutive blocks of ``counts[i]`` rows: each document's share of a batch's vectors."""
    bounds = [0, *itertools.accumulate(counts)]
    return [vectors[a:b] for a, b in itertools.pairwise(bounds)]
