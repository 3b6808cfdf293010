"""Writing the index atomically.

A build is written into a fresh hidden folder beside the configured index path, then published by
pointing the index path (a symbolic link) at it with one ``os.replace``: readers see either the
old index or the new one, never a mix, and a crash at any point leaves the old index in place.
Older builds and leftovers of crashed builds are removed after a successful swap. A lock file
serializes concurrent builds of the same index.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import InputError
from rag.retrieval import store
from rag.retrieval.embedder import Vectors
from rag.types import Chunk, Document

TRAINING_POINTS_PER_LIST = 50


def ivf_lists(chunk_count: int) -> int:
    """About sqrt(n) inverted lists, a power of two: 1,024 for a million vectors."""
    return int(max(1, 2 ** round(math.log2(max(1.0, math.sqrt(chunk_count))))))


def dense_index_kind(chunk_count: int, ann_threshold: int) -> str:
    """Exact search while it is fast enough, IVF above the threshold (see README, Performance)."""
    return "flat" if chunk_count < ann_threshold else f"ivf{ivf_lists(chunk_count)}"


_held = threading.local()  # the lock files this thread holds: the lock is reentrant per thread


@contextmanager
def build_lock(index_dir: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the index's write lock (across processes); yields False when ``wait`` is off and
    another writer holds it. A thread that holds it already may take it again."""
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = str((index_dir.parent / f".{index_dir.name}.lock").resolve())
    held: set[str] = _held.__dict__.setdefault("paths", set())
    if lock_path in held:
        yield True
        return
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        held.add(lock_path)
        try:
            yield True
        finally:
            held.discard(lock_path)


def remove_leftovers(index_dir: Path) -> list[Path]:
    """Delete what crashed builds left beside ``index_dir`` (staging folders, temporary links);
    only under the build lock, when no build can be running. Returns what was deleted."""
    found = [*index_dir.parent.glob(f".{index_dir.name}-*.tmp"),
             *index_dir.parent.glob(f".{index_dir.name}.link-*")]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def write_index(
    index_dir: Path,
    manifest: store.Manifest,
    documents: list[Document],
    chunks: list[Chunk],
    vectors: Vectors,
    span_vectors: Vectors,
) -> Path:
    """Write a complete build beside ``index_dir`` and swap it in; returns the build folder.
    The caller holds the build lock."""
    _ensure_replaceable(index_dir)
    remove_leftovers(index_dir)
    parent = index_dir.parent
    staging = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}-", suffix=".tmp", dir=parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; an index is meant to be shared
        _write_files(staging, manifest, documents, chunks, vectors, span_vectors)
        build = staging.with_suffix("")  # drop ".tmp": complete builds carry no suffix
        os.rename(staging, build)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _point_link(index_dir, build)
    _remove_stale_builds(index_dir, keep=build)
    return build


def _write_files(
    folder: Path,
    manifest: store.Manifest,
    documents: list[Document],
    chunks: list[Chunk],
    vectors: Vectors,
    span_vectors: Vectors,
) -> None:
    import bm25s
    import faiss

    from rag.retrieval.lexical import terms

    _write_jsonl(folder / store.DOCUMENTS, map(store.document_record, documents))
    _write_jsonl(folder / store.CHUNKS, map(store.chunk_record, chunks))
    faiss.write_index(dense_index(vectors, manifest.dense_index), str(folder / store.DENSE))
    np.save(folder / store.SPANS, np.ascontiguousarray(span_vectors, dtype=np.float32),
            allow_pickle=False)
    lexical = bm25s.BM25()
    lexical.index([terms(chunk.text) for chunk in chunks], show_progress=False)
    lexical.save(str(folder / store.LEXICAL), show_progress=False)
    # The manifest goes last, with every other file's checksum: a folder without one is never
    # mistaken for a finished build, and a file damaged later is refused on loading.
    manifest = dataclasses.replace(manifest, files=store.file_checksums(folder))
    (folder / store.MANIFEST).write_text(
        json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
    )


def dense_index(vectors: Vectors, kind: str) -> Any:
    import faiss

    dim = vectors.shape[1]
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(kind.removeprefix("ivf"))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(_training_sample(vectors, lists))
    index.add(vectors)
    return index


def _training_sample(vectors: Vectors, lists: int) -> Vectors:
    """k-means needs a few dozen points per list, not all of them: a fixed random sample."""
    wanted = TRAINING_POINTS_PER_LIST * lists
    if len(vectors) <= wanted:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), size=wanted, replace=False)
    return vectors[np.sort(rows)]


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False))
            f.write("\n")


def _ensure_replaceable(link: Path) -> None:
    if link.exists() and not link.is_symlink():
        raise InputError(
            f"{link} exists and is not an index link made by `rag index build`: "
            "move it away or choose another RAG_INDEX_DIR"
        )


def _point_link(link: Path, build: Path) -> None:
    temporary = link.with_name(f".{link.name}.link-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.symlink(build.name, temporary)
    os.replace(temporary, link)


def _remove_stale_builds(link: Path, keep: Path) -> None:
    for candidate in link.parent.glob(f".{link.name}-*"):
        if candidate.is_dir() and candidate != keep:
            shutil.rmtree(candidate, ignore_errors=True)
