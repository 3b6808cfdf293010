"""The Ray engine: reading, chunking and embedding new or changed documents as a Ray Data pipeline.

One row per file flows through two ``map_batches`` stages: ``read_and_chunk`` (the function the
local engine uses) in tasks, then ``embed_chunks`` in a pool of actors, each of which loads the
embedder once (``ChunkEmbedder``). Ray may fuse the two stages into the actors; either way they
run in parallel over the cluster's CPUs. The rows come back to the driver as the same
``Processed`` the local engine returns, and the builder merges them as usual: the IVF training
sample, the FAISS and BM25 indexes and the atomic swap stay on the driver.

Ray is an optional extra (``pip install -e '.[ray]'``), imported only here and only when asked
for. Without an address a local Ray instance is started on this machine's cores and stopped
afterwards; with one, the cluster's nodes need this project's dependencies and the embedding
model package installed, and the files must be readable at the same absolute paths (shared
storage). The driver ships its own ``rag`` and ``index_build`` code to the workers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from index_build.embedding import embed_chunks, embed_spans, span_counts
from index_build.processing import IndexedDocument, Processed, read_and_chunk
from index_build.reading import SourceFile
from rag.errors import InputError
from rag.retrieval.embedder import Embedder, split_rows
from rag.retrieval.store import (
    chunk_from_record,
    chunk_record,
    document_from_record,
    document_record,
)
from rag.settings import Settings
from rag.types import Chunk

INSTALL_HINT = "pip install -e '.[ray]'"
# Documents per batch: small enough to spread a few hundred files over the actors, large enough
# that embedding batches are full (a document has a few chunks, the embedder takes 64 at a time).
BATCH_DOCUMENTS = 16
# Torch threads per embedding actor: one actor per CPU uses the cores better than fewer,
# multi-threaded ones on small batches.
ACTOR_THREADS = 1


def process_on_ray(
    sources: list[SourceFile], settings: Settings, address: str | None, progress: bool
) -> Processed:
    ray = _import_ray()
    items = [
        # Workers may run elsewhere: they read the absolute path, the index keeps the given one.
        {"doc_id": s.doc_id, "path": str(s.path), "file": str(s.path.resolve())} for s in sources
    ]
    with _connected(ray, address, settings.threads):
        ray.data.DataContext.get_current().enable_progress_bars = progress
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        dataset = (
            ray.data.from_items(items)
            .map_batches(
                read_batch,
                batch_size=BATCH_DOCUMENTS,
                batch_format="pyarrow",
                fn_kwargs={"max_tokens": settings.chunk_tokens,
                           "overlap_tokens": settings.chunk_overlap},
            )
            .map_batches(
                ChunkEmbedder,
                batch_size=BATCH_DOCUMENTS,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                fn_constructor_kwargs={"threads": ACTOR_THREADS},
                num_cpus=ACTOR_THREADS,
            )
        )
        return _collect(dataset.iter_rows())


def read_batch(batch: Any, max_tokens: int, overlap_tokens: int) -> Any:
    """Read and chunk each file of a batch: a row per document, or its failure in ``error``."""
    import pyarrow as pa

    rows: dict[str, list[str]] = {"document": [], "chunks": [], "error": []}
    for item in batch.to_pylist():
        try:
            source = SourceFile(Path(item["file"]), item["doc_id"])
            document, chunks = read_and_chunk(source, max_tokens, overlap_tokens)
        except InputError as exc:
            rows["document"].append("")
            rows["chunks"].append("[]")
            rows["error"].append(str(exc))
            continue
        rows["document"].append(json.dumps(document_record(replace(document, path=item["path"]))))
        rows["chunks"].append(json.dumps([chunk_record(c) for c in chunks]))
        rows["error"].append("")
    return pa.table(rows)


class ChunkEmbedder:
    """An embedding actor: loads the embedder once, then embeds the chunks of batch after batch."""

    def __init__(self, threads: int) -> None:
        self.embedder = Embedder(threads)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist()
        per_row = [_chunks(row) for row in rows]  # failed files come with no chunks
        chunks = [chunk for row_chunks in per_row for chunk in row_chunks]
        vectors = (
            embed_chunks(chunks, self.embedder, progress=False) if chunks
            else np.empty((0, self.embedder.dim), dtype=np.float32)
        )
        shares = split_rows(vectors, [len(row_chunks) for row_chunks in per_row])
        spans = split_rows(embed_spans(chunks, self.embedder, progress=False),
                              [span_counts(row_chunks) for row_chunks in per_row])
        return pa.table({
            "document": [row["document"] for row in rows],
            "chunks": [row["chunks"] for row in rows],
            "error": [row["error"] for row in rows],
            # Raw float32 bytes: exact, and no variable-shaped tensor columns to agree on.
            "vectors": pa.array([share.tobytes() for share in shares], type=pa.binary()),
            "span_vectors": pa.array([share.tobytes() for share in spans], type=pa.binary()),
        })


def _chunks(row: dict[str, str]) -> list[Chunk]:
    return [chunk_from_record(record) for record in json.loads(row["chunks"])]


def _collect(rows: Iterator[dict[str, Any]]) -> Processed:
    documents, failures = [], []
    for row in rows:
        if row["error"]:
            failures.append(row["error"])
            continue
        chunks = _chunks(row)
        vectors = np.frombuffer(row["vectors"], dtype=np.float32).reshape(len(chunks), -1)
        spans = np.frombuffer(row["span_vectors"], dtype=np.float32).reshape(
            -1, vectors.shape[1])
        document = document_from_record(json.loads(row["document"]))
        documents.append(IndexedDocument(document, chunks, vectors, spans))
    return Processed(documents, failures)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # the Data library is a separate import
    except ImportError:
        raise InputError(
            f"the Ray engine needs the optional Ray packages: {INSTALL_HINT}"
        ) from None
    return ray


@contextmanager
def _connected(ray: Any, address: str | None, cpus: int) -> Iterator[None]:
    import index_build
    import rag

    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,  # workers' own logs stay in Ray's session folder
        "logging_level": logging.ERROR,
        # The workers run the driver's code, not whatever copy a node has installed.
        "runtime_env": {"py_modules": [rag, index_build]},
    }
    # Ray Data reports every run and warns that progress bars are off: the build reports itself.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if address is None:
        # "local" starts a fresh instance even when RAY_ADDRESS points at a cluster.
        ray.init(address="local", num_cpus=cpus, **options)
    else:
        ray.init(address=address, **options)
    try:
        yield
    finally:
        ray.shutdown()
