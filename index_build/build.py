"""The index build: plan -> read, chunk and embed what is new or changed -> merge -> write.

A build's corpus is a set of documents, each known by its id and content checksum: exactly the
given paths (``build_index``), the current index's documents plus the given paths
(``add_documents``), or the current index's documents less some (``remove_documents``). A
document whose id and checksum the current index already holds, built by the same reader, chunker
and embedding model with the same chunk settings, keeps its stored text, chunks and vectors; only
the others are read, chunked and embedded, in this process or on Ray (``engine``). The dense index
and BM25 are then rebuilt from all vectors and chunk texts and swapped in atomically
(``index_build.writing``). A corpus and recipe identical to the current index's is a no-op.

Documents are ordered by id, so an index does not depend on how its corpus was assembled: adding
a document gives the same chunks, rows and search results as building the whole corpus at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from index_build.chunking import CHUNKER_VERSION, TOKEN_ENCODING
from index_build.processing import IndexedDocument, Processed, process_locally
from index_build.reading import (
    READER_VERSION,
    SourceFile,
    file_sha256,
    find_files,
    kind_of,
)
from index_build.writing import build_lock, dense_index_kind, write_index
from rag.errors import (
    IndexMismatchError,
    IndexNotFoundError,
    InputError,
    UnknownDocumentError,
    UnreadableDocumentsError,
)
from rag.retrieval import store
from rag.retrieval.embedder import EMBED_MODEL_NAME, Embedder
from rag.settings import BUNDLED_CORPUS, Settings

EngineName = Literal["local", "ray"]


@dataclass(frozen=True)
class BuildResult:
    status: Literal["built", "unchanged"]
    manifest: store.Manifest
    index_dir: Path


@dataclass(frozen=True)
class _Engine:
    """Where new or changed documents are read, chunked and embedded."""

    name: EngineName = "local"
    address: str | None = None  # a Ray cluster; None starts a local Ray instance
    embedder: Embedder | None = None  # the local engine's; loaded when first needed if None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.address is not None and self.name != "ray":
            raise InputError("a Ray address only applies to the Ray engine (--engine ray)")


@dataclass(frozen=True)
class _Corpus:
    """The documents the build should hold."""

    kept: list[store.DocumentInfo]  # taken from the current index as they are
    files: list[tuple[SourceFile, str]]  # files with their checksums
    failures: list[str]  # files that could not even be read to be checksummed

    @classmethod
    def of(cls, kept: list[store.DocumentInfo], sources: list[SourceFile]) -> _Corpus:
        files, failures = [], []
        for source in sources:
            try:
                files.append((source, file_sha256(source.path)))
            except InputError as exc:
                failures.append(str(exc))
        return cls(kept, files, failures)

    def checksums(self) -> list[tuple[str, str]]:
        return [(d.doc_id, d.sha256) for d in self.kept] + [
            (source.doc_id, sha256) for source, sha256 in self.files
        ]


def build_index(
    settings: Settings,
    paths: Sequence[Path] = (),
    embedder: Embedder | None = None,
    progress: bool = False,
    engine: EngineName = "local",
    address: str | None = None,
) -> BuildResult:
    """Index exactly ``paths`` (the bundled article when empty) into ``settings.index_dir``.

    Documents the current index holds unchanged keep their chunks and vectors when the recipe
    (models, reader, chunker, chunk settings) matches; rebuilding an unchanged corpus is a no-op.
    """
    sources = find_files(list(paths) or [BUNDLED_CORPUS])
    with build_lock(settings.index_dir):
        current = _current_manifest(settings.index_dir)
        engine_choice = _Engine(engine, address, embedder, progress)
        return _build(settings, [], sources, current, engine_choice)


def add_documents(
    settings: Settings,
    paths: Sequence[Path],
    embedder: Embedder | None = None,
    progress: bool = False,
    engine: EngineName = "local",
    address: str | None = None,
) -> BuildResult:
    """Add the documents under ``paths`` to the current corpus; one with an id the index already
    holds replaces it. With no index yet, this starts one. The index's chunk settings are kept."""
    return _add(settings, find_files(paths), _Engine(engine, address, embedder, progress))


def add_sources(settings: Settings, sources: list[SourceFile],
                embedder: Embedder | None = None) -> BuildResult:
    """``add_documents`` of files already found and named (the service's uploads), embedded in
    this process (with ``embedder`` when given)."""
    return _add(settings, sources, _Engine(embedder=embedder))


def _add(settings: Settings, sources: list[SourceFile], engine: _Engine) -> BuildResult:
    with build_lock(settings.index_dir):
        try:
            current: store.Manifest | None = _extendable(settings.index_dir, "add")
        except IndexNotFoundError:
            current = None
        if current is not None:
            settings = _chunking_of(current, settings)
        added = {source.doc_id for source in sources}
        kept = [d for d in current.documents if d.doc_id not in added] if current else []
        return _build(settings, kept, sources, current, engine)


def remove_documents(settings: Settings, doc_ids: Sequence[str]) -> BuildResult:
    """Drop documents by id from the current index; nothing is read or embedded."""
    with build_lock(settings.index_dir):
        current = _extendable(settings.index_dir, "remove")
        known = {d.doc_id for d in current.documents}
        unknown = [doc_id for doc_id in dict.fromkeys(doc_ids) if doc_id not in known]
        if unknown:
            raise UnknownDocumentError(
                f"the index at {settings.index_dir} has no document "
                f"{', '.join(map(repr, unknown))}: `rag index list` (or GET /v1/documents) lists "
                "the document ids"
            )
        kept = [d for d in current.documents if d.doc_id not in set(doc_ids)]
        if not kept:
            raise InputError(
                "removing every document would leave an empty index: build a new one with "
                "`rag index build PATH ...` instead"
            )
        return _build(_chunking_of(current, settings), kept, [], current, _Engine())


def ensure_default_index(settings: Settings, announce: Callable[[str], None]) -> None:
    """A newcomer's first question just works: index the bundled article on first use.

    Only at the default location: a missing custom RAG_INDEX_DIR is more likely a typo.
    """
    if settings.index_dir != Settings().index_dir or _current_manifest(settings.index_dir):
        return
    announce(f"No index at {settings.index_dir} yet: indexing the bundled article first…")
    build_index(settings)


def _build(
    settings: Settings,
    kept: list[store.DocumentInfo],
    sources: list[SourceFile],
    current: store.Manifest | None,
    engine: _Engine,
) -> BuildResult:
    """Build an index of ``kept`` (documents of the current index) and ``sources`` (files)."""
    started = time.perf_counter()
    corpus = _Corpus.of(kept, sources)
    if (
        not corpus.failures
        and current is not None
        and current.fingerprint == _fingerprint(corpus.checksums(), settings)
    ):
        return BuildResult("unchanged", current, settings.index_dir)
    known = (
        {(d.doc_id, d.sha256) for d in current.documents}
        if current is not None and _reusable(current, settings) else set()
    )
    fresh = [source for source, sha256 in corpus.files if (source.doc_id, sha256) not in known]
    fresh_ids = {source.doc_id for source in fresh}
    reused_files = {s.doc_id: s for s, _ in corpus.files if s.doc_id not in fresh_ids}
    reused: list[IndexedDocument] = []
    if corpus.kept or reused_files:
        reused = _reused(store.read_corpus(settings.index_dir), corpus.kept, reused_files)
    processed = _process(fresh, settings, engine) if fresh else Processed([], [])
    failures = corpus.failures + processed.failures
    if failures:
        files = len(corpus.files) + len(corpus.failures)
        raise UnreadableDocumentsError(failures, files, str(settings.index_dir))
    # Every document has at least one chunk (blank files fail), so there is a vector to stack.
    indexed = sorted([*reused, *processed.documents], key=lambda d: d.document.doc_id)
    documents = [d.document for d in indexed]
    chunks = [c for d in indexed for c in d.chunks]
    vectors = np.ascontiguousarray(np.vstack([d.vectors for d in indexed]), dtype=np.float32)
    span_vectors = np.vstack([d.span_vectors for d in indexed])
    names = {source.doc_id: source.name for source, _ in corpus.files if source.name}
    manifest = _manifest(settings, engine.name, indexed, processed.documents, current, started,
                         names)
    write_index(settings.index_dir, manifest, documents, chunks, vectors, span_vectors)
    return BuildResult("built", manifest, settings.index_dir)


def _manifest(
    settings: Settings,
    engine: EngineName,
    indexed: list[IndexedDocument],
    embedded: list[IndexedDocument],
    current: store.Manifest | None,
    started: float,
    names: dict[str, str],
) -> store.Manifest:
    embedded_ids = {d.document.doc_id for d in embedded}
    chunk_count = sum(len(d.chunks) for d in indexed)
    embedded_chunks = sum(len(d.chunks) for d in embedded)
    previous = {d.doc_id: d for d in current.documents} if current else {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return store.Manifest(
        format_version=store.FORMAT_VERSION,
        fingerprint=_fingerprint([(d.document.doc_id, d.document.sha256) for d in indexed],
                                 settings),
        created_at=now,
        build_seconds=round(time.perf_counter() - started, 3),
        engine=engine,
        reader=READER_VERSION,
        embed_model=EMBED_MODEL_NAME,
        embed_dim=int(indexed[0].vectors.shape[1]),
        token_encoding=TOKEN_ENCODING,
        chunker=CHUNKER_VERSION,
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        dense_index=dense_index_kind(chunk_count, settings.ann_threshold),
        chunk_count=chunk_count,
        embedded_chunks=embedded_chunks,
        reused_chunks=chunk_count - embedded_chunks,
        removed=sorted(previous.keys() - {d.document.doc_id for d in indexed}),
        documents=[
            _document_info(d, d.document.doc_id not in embedded_ids,
                           previous.get(d.document.doc_id), names.get(d.document.doc_id), now)
            for d in indexed
        ],
    )


def _document_info(indexed: IndexedDocument, reused: bool, before: store.DocumentInfo | None,
                   name: str | None, now: str) -> store.DocumentInfo:
    """A document's manifest entry; what a person sees of it carries over while its content
    stays the same."""
    document = indexed.document
    same = before if before is not None and before.sha256 == document.sha256 else None
    path = Path(document.path)
    size = same.bytes if same and same.bytes else (path.stat().st_size if path.is_file() else 0)
    return store.DocumentInfo(
        doc_id=document.doc_id,
        path=document.path,
        sha256=document.sha256,
        chars=len(document.text),
        chunks=len(indexed.chunks),
        reused=reused,
        name=name or (before.name if before and before.name else document.doc_id),
        kind=kind_of(path),
        bytes=size,
        pages=len(document.page_starts),
        added_at=same.added_at if same and same.added_at else now,
    )


def _process(sources: list[SourceFile], settings: Settings, engine: _Engine) -> Processed:
    if engine.name == "ray":
        from index_build.distributed import process_on_ray

        return process_on_ray(sources, settings, engine.address, engine.progress)
    return process_locally(
        sources,
        settings.chunk_tokens,
        settings.chunk_overlap,
        lambda: engine.embedder or Embedder(settings.threads),
        engine.progress,
    )


def _reused(
    stored: store.StoredCorpus,
    kept: list[store.DocumentInfo],
    files: dict[str, SourceFile],
) -> list[IndexedDocument]:
    """The stored documents, chunks and vectors of ``kept`` and of unchanged ``files`` (which
    take the path they were found at this time)."""
    rows: dict[str, list[int]] = {}
    for row, chunk in enumerate(stored.chunks):
        rows.setdefault(chunk.source, []).append(row)
    reused = []
    for doc_id in [d.doc_id for d in kept] + list(files):
        document = stored.documents[doc_id]
        if doc_id in files:
            document = replace(document, path=str(files[doc_id].path))
        chunks = [stored.chunks[r] for r in rows.get(doc_id, [])]
        spans = [stored.spans.of_chunk(c) for c in chunks]
        reused.append(IndexedDocument(document, chunks, stored.vectors[rows.get(doc_id, [])],
                                      np.vstack([s for s in spans if s is not None])))
    return reused


def _extendable(index_dir: Path, action: str) -> store.Manifest:
    """The current index's manifest, if documents can be added to or removed from it as it is."""
    manifest = store.read_manifest(index_dir)
    ours, theirs = _code_versions(), _code_versions_of(manifest)
    if ours != theirs:
        differences = ", ".join(
            f"{key} {theirs[key]!r} (now {ours[key]!r})" for key in ours if ours[key] != theirs[key]
        )
        raise IndexMismatchError(
            f"the index at {index_dir} was made with {differences}, so `rag index {action}` "
            "cannot reuse it: rebuild it with `rag index build PATH ...`"
        )
    return manifest


def _chunking_of(manifest: store.Manifest, settings: Settings) -> Settings:
    """Adding to or removing from an index keeps its chunk settings (a rebuild changes them)."""
    return settings.replace(chunk_tokens=manifest.chunk_tokens,
                            chunk_overlap=manifest.chunk_overlap)


def _reusable(manifest: store.Manifest, settings: Settings) -> bool:
    """Stored chunks and vectors are reused only if made the way this build would make them."""
    return _code_versions_of(manifest) == _code_versions() and (
        manifest.chunk_tokens, manifest.chunk_overlap
    ) == (settings.chunk_tokens, settings.chunk_overlap)


def _code_versions() -> dict[str, str]:
    return {
        "reader": READER_VERSION,
        "embed_model": EMBED_MODEL_NAME,
        "token_encoding": TOKEN_ENCODING,
        "chunker": CHUNKER_VERSION,
    }


def _code_versions_of(manifest: store.Manifest) -> dict[str, str]:
    return {
        "reader": manifest.reader,
        "embed_model": manifest.embed_model,
        "token_encoding": manifest.token_encoding,
        "chunker": manifest.chunker,
    }


def _fingerprint(checksums: Iterable[tuple[str, str]], settings: Settings) -> str:
    """Everything that determines the index content, hashed."""
    recipe = {
        "format": store.FORMAT_VERSION,
        **_code_versions(),
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "ann_threshold": settings.ann_threshold,
        "documents": sorted(checksums),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _current_manifest(index_dir: Path) -> store.Manifest | None:
    """The current index's manifest, or None when there is none to build on (none at all, of
    another format, or damaged: then everything is built afresh)."""
    try:
        manifest = store.read_manifest(index_dir)
        store.verify_files(index_dir.resolve(), manifest)
        return manifest
    except (IndexNotFoundError, IndexMismatchError):
        return None
