"""Processing new or changed documents in this process: read -> chunk -> embed.

The Ray engine (``index_build.distributed``) runs the same steps, ``read_and_chunk`` and
``embed_chunks``, spread over a cluster and returns the same ``Processed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from index_build.chunking import chunk_document
from index_build.embedding import embed_chunks, embed_spans, span_counts
from index_build.reading import SourceFile, read_document
from rag.errors import InputError
from rag.retrieval.embedder import Embedder, Vectors, split_rows
from rag.types import Chunk, Document


@dataclass(frozen=True)
class IndexedDocument:
    """A document with its chunks and their vectors: row i of ``vectors`` embeds ``chunks[i]``;
    ``span_vectors`` embeds each chunk's quotable spans (``Chunk.spans``), chunk after chunk."""

    document: Document
    chunks: list[Chunk]
    vectors: Vectors
    span_vectors: Vectors


@dataclass(frozen=True)
class Processed:
    documents: list[IndexedDocument]
    failures: list[str]  # one message per file that could not be read


def read_and_chunk(source: SourceFile, max_tokens: int, overlap_tokens: int) -> tuple[
    Document, list[Chunk]
]:
    document = source.read or read_document(source.path, source.doc_id)
    return document, chunk_document(document, max_tokens, overlap_tokens)


def process_locally(
    sources: list[SourceFile],
    max_tokens: int,
    overlap_tokens: int,
    embedder: Callable[[], Embedder],
    progress: bool,
) -> Processed:
    """Read and chunk every file, then embed all chunks in one pass (batches span documents).

    ``embedder`` is called only when there is something to embed: loading it takes seconds.
    When a file fails nothing is embedded, since nothing will be written.
    """
    read: list[tuple[Document, list[Chunk]]] = []
    failures: list[str] = []
    for source in sources:
        try:
            read.append(read_and_chunk(source, max_tokens, overlap_tokens))
        except InputError as exc:
            failures.append(str(exc))
    if failures or not read:
        return Processed([], failures)
    model = embedder()
    every = [c for _, chunks in read for c in chunks]
    shares = split_rows(embed_chunks(every, model, progress), [len(c) for _, c in read])
    spans = split_rows(embed_spans(every, model, progress), [span_counts(c) for _, c in read])
    return Processed([IndexedDocument(d, chunks, v, s) for (d, chunks), v, s
                      in zip(read, shares, spans, strict=True)], [])
