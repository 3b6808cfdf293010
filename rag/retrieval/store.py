"""The on-disk index: its layout, its manifest, and loading it back.

An index folder holds::

    manifest.json     what was indexed, how, with which models, and what the build reused
    documents.jsonl   every document's id, path, checksum, text (quotes are checked against it)
                      and, for paged formats (PDF), where each page starts in that text
    chunks.jsonl      every chunk with its document id, span and sentence spans
    dense.faiss       the FAISS index of the chunk embeddings (row i = line i of chunks.jsonl)
    spans.npy         the embedding of every quotable span of every chunk (``Chunk.spans``),
                      chunk after chunk: the citation checker reads them instead of embedding
    lexical/          the BM25 side index (bm25s format)

The configured index path is a symbolic link to one immutable build folder beside it; the index
builder swaps the link atomically (see ``index_build.writing``). The next build reads the chunks
and vectors of unchanged documents back from it (``read_corpus``) instead of embedding them again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from rag.errors import IndexMismatchError, IndexNotFoundError
from rag.retrieval.embedder import Vectors
from rag.types import Chunk, Document

# 2: documents carry page starts; the manifest records the reader, the chunker and what was reused.
# 3: spans.npy, the chunks' quotable spans embedded at build time.
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
DENSE = "dense.faiss"
SPANS = "spans.npy"
LEXICAL = "lexical"
KV_STATES = "kv"


@dataclass(frozen=True)
class DocumentInfo:
    doc_id: str
    path: str
    sha256: str
    chars: int
    chunks: int
    reused: bool  # its chunks and vectors were taken from the previous build, not embedded again
    # What a person sees in the documents list. Indexes built before these fields existed read
    # with the defaults.
    name: str = ""  # the name it was uploaded or added under (an upload's id is generated)
    kind: str = ""  # the format it was read as: txt, md, html, pdf or docx
    bytes: int = 0  # the size of the file as indexed
    pages: int = 0  # 0 for formats without pages
    added_at: str = ""  # when this content was first indexed (ISO 8601, UTC)

    def listing(self) -> ListedDocument:
        return ListedDocument(id=self.doc_id, name=self.name or self.doc_id, type=self.kind,
                        size=self.bytes, pages=self.pages, chunks=self.chunks,
                        added_at=self.added_at, checksum=self.sha256)


class ListedDocument(msgspec.Struct):
    """A document as the documents routes, their jobs and ``rag index list --json`` show it."""

    id: str
    name: str  # the name it was uploaded or added under
    type: str  # the format it was read as: txt, md, html, pdf or docx
    size: int  # bytes of the file as indexed
    pages: int  # 0 for formats without pages
    chunks: int
    added_at: str  # when this content was first indexed (ISO 8601, UTC)
    checksum: str  # sha256 of the file


class UploadedDocument(ListedDocument, kw_only=True):
    """A document an upload sent, and what became of it."""

    status: str  # "added", or "duplicate" when the same content was indexed already


@dataclass(frozen=True)
class Manifest:
    format_version: int
    fingerprint: str
    created_at: str
    build_seconds: float
    engine: str  # "local" (one process) or "ray"
    reader: str
    embed_model: str
    embed_dim: int
    token_encoding: str
    chunker: str
    chunk_tokens: int
    chunk_overlap: int
    dense_index: str
    chunk_count: int
    embedded_chunks: int  # chunks of new or changed documents, embedded by this build
    reused_chunks: int  # chunks of unchanged documents, vectors taken from the previous build
    removed: list[str] = field(default_factory=list)  # doc ids the previous build had
    documents: list[DocumentInfo] = field(default_factory=list)
    # sha256 of every other file of the build, by path inside it: checked on every load.
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        docs = [DocumentInfo(**d) for d in data.get("documents", [])]
        return cls(**{**data, "documents": docs})


@dataclass(frozen=True)
class StoredText:
    """A build's folder, its manifest, and the documents and chunks it holds."""

    path: Path
    manifest: Manifest
    documents: dict[str, Document]
    chunks: list[Chunk]


@dataclass(frozen=True)
class SpanVectors:
    """The stored embedding of each chunk's quotable spans (``Chunk.spans``), by chunk id."""

    vectors: Vectors  # every chunk's spans, chunk after chunk
    first: dict[str, int]  # chunk id -> its first row

    @classmethod
    def of(cls, chunks: list[Chunk], vectors: Vectors) -> SpanVectors:
        counts = [len(chunk.spans()) for chunk in chunks]
        starts = np.cumsum([0, *counts])
        if starts[-1] != len(vectors):
            raise ValueError(f"{len(vectors)} span vectors for {starts[-1]} spans")
        return cls(vectors, {c.chunk_id: int(s) for c, s in zip(chunks, starts, strict=False)})

    def of_chunk(self, chunk: Chunk) -> Vectors | None:
        """Rows of ``chunk``'s spans, in ``Chunk.spans`` order; None for a chunk not stored."""
        first = self.first.get(chunk.chunk_id)
        return None if first is None else self.vectors[first:first + len(chunk.spans())]


@dataclass(frozen=True)
class StoredIndex(StoredText):
    """Everything the retriever and the citation checker need, loaded once."""

    dense: Any  # faiss.Index
    lexical: Any  # bm25s.BM25
    spans: SpanVectors


@dataclass(frozen=True)
class StoredCorpus(StoredText):
    """What an index holds per chunk, for the next build to reuse: no BM25, vectors as arrays."""

    vectors: Vectors  # row i belongs to chunks[i]
    spans: SpanVectors


def read_manifest(index_dir: Path) -> Manifest:
    manifest_path = index_dir / MANIFEST
    if not manifest_path.is_file():
        raise IndexNotFoundError(
            f"no index at {index_dir}: build one with `rag index build [PATH ...]`"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        version = data.get("format_version")
    except (ValueError, AttributeError) as exc:
        raise _unreadable(index_dir, exc) from None
    # Checked before the fields: another format may have other fields.
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index at {index_dir} has format {version}, this code reads "
            f"format {FORMAT_VERSION}: rebuild it with `rag index build`"
        )
    try:
        return Manifest.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise _unreadable(index_dir, exc) from None


def _unreadable(index_dir: Path, exc: Exception) -> IndexMismatchError:
    return IndexMismatchError(
        f"the index at {index_dir} has an unreadable manifest ({exc}): "
        "rebuild it with `rag index build`"
    )


def load_index(index_dir: Path, embed_model: str) -> StoredIndex:
    """Load the index behind ``index_dir``; refuse one built with another embedding model."""
    import bm25s
    import faiss

    # Resolve the link once so a rebuild swapping it mid-load cannot mix two builds.
    resolved = index_dir.resolve()
    manifest = read_manifest(resolved)
    if manifest.embed_model != embed_model:
        raise IndexMismatchError(
            f"the index at {index_dir} was built with embedding model {manifest.embed_model!r} "
            f"but this service embeds questions with {embed_model!r}: rebuild it with "
            "`rag index build`"
        )
    verify_files(resolved, manifest)
    documents, chunks = _read_texts(resolved)
    dense = faiss.read_index(str(resolved / DENSE))
    lexical = bm25s.BM25.load(str(resolved / LEXICAL), show_progress=False)
    _check_consistent(index_dir, manifest, chunks, dense.ntotal)
    # Mapped, not read: pages are loaded as questions touch their chunks.
    spans = _span_vectors(index_dir, resolved, chunks, mmap=True)
    return StoredIndex(resolved, manifest, documents, chunks, dense, lexical, spans)


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file the build wrote but the manifest, by relative path. Saved model
    states (``kv/``, written beside the index later by ``rag.llm.kv_state``) are not the build's."""
    return {
        str(path.relative_to(folder)): _sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
        and path.relative_to(folder).parts[0] != KV_STATES
    }


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Refuse a build whose files are not exactly the ones its manifest lists (truncated,
    changed or missing since the build), before any of them is parsed."""
    found = file_checksums(folder)
    if not manifest.files:
        raise IndexMismatchError(f"the index at {folder} lists no file checksums: rebuild it "
                                 "with `rag index build`")
    bad = sorted(name for name in manifest.files.keys() | found.keys()
                 if manifest.files.get(name) != found.get(name))
    if bad:
        raise IndexMismatchError(
            f"the index at {folder} is damaged: {', '.join(bad)} "
            "missing, changed or truncated since it was built: rebuild it with `rag index build`"
        )


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_corpus(index_dir: Path) -> StoredCorpus:
    """Documents, chunks and the exact chunk vectors of the index behind ``index_dir``.

    Flat and IVF-flat indexes store vectors uncompressed, so reconstructing them gives back
    exactly what was embedded.
    """
    import faiss

    resolved = index_dir.resolve()
    manifest = read_manifest(resolved)
    verify_files(resolved, manifest)
    documents, chunks = _read_texts(resolved)
    dense = faiss.read_index(str(resolved / DENSE))
    _check_consistent(index_dir, manifest, chunks, dense.ntotal)
    if hasattr(dense, "make_direct_map"):  # IVF: rows are found through a direct map
        dense.make_direct_map()
    vectors = (
        dense.reconstruct_n(0, dense.ntotal) if dense.ntotal
        else np.empty((0, manifest.embed_dim), dtype=np.float32)
    )
    return StoredCorpus(resolved, manifest, documents, chunks, np.ascontiguousarray(vectors),
                        _span_vectors(index_dir, resolved, chunks, mmap=False))


def _span_vectors(index_dir: Path, folder: Path, chunks: list[Chunk], mmap: bool) -> SpanVectors:
    vectors = np.load(folder / SPANS, mmap_mode="r" if mmap else None, allow_pickle=False)
    try:
        return SpanVectors.of(chunks, vectors)
    except ValueError as exc:
        raise IndexMismatchError(f"the index at {index_dir} is inconsistent ({exc}): rebuild "
                                 "it with `rag index build`") from None


def chunk_record(chunk: Chunk) -> dict[str, Any]:
    record = asdict(chunk)
    record["sentences"] = [list(span) for span in chunk.sentences]
    return record


def document_record(document: Document) -> dict[str, Any]:
    record = asdict(document)
    record["page_starts"] = list(document.page_starts)
    return record


def chunk_from_record(record: dict[str, Any]) -> Chunk:
    return Chunk(**{**record, "sentences": tuple(tuple(s) for s in record["sentences"])})


def document_from_record(record: dict[str, Any]) -> Document:
    return Document(**{**record, "page_starts": tuple(record["page_starts"])})


def _read_texts(folder: Path) -> tuple[dict[str, Document], list[Chunk]]:
    documents = {
        d.doc_id: d for d in map(document_from_record, _read_jsonl(folder / DOCUMENTS))
    }
    return documents, [chunk_from_record(record) for record in _read_jsonl(folder / CHUNKS)]


def _check_consistent(
    index_dir: Path, manifest: Manifest, chunks: list[Chunk], vectors: int
) -> None:
    if vectors != len(chunks) or len(chunks) != manifest.chunk_count:
        raise IndexMismatchError(
            f"the index at {index_dir} is inconsistent ({vectors} vectors, {len(chunks)} "
            f"chunks, manifest says {manifest.chunk_count}): rebuild it with `rag index build`"
        )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
