"""The on-disk index: its layout, its manifest, and loading it back.

An index folder holds::

    manifest.json     what was indexed, how, and with which models
    documents.jsonl   every document's id, path, checksum, text (quotes are checked against it)
                      and, for paged formats (PDF), where each page starts in that text
    chunks.jsonl      every chunk with its document id, span and sentence spans
    dense.faiss       the FAISS index of the chunk embeddings (row i = line i of chunks.jsonl)
    lexical/          the BM25 side index (bm25s format)

The configured index path is a symbolic link to one immutable build folder beside it; the index
builder swaps the link atomically (see ``index_build.writing``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import IndexMismatchError, IndexNotFoundError
from rag.types import Chunk, Document

# 2: documents carry page starts.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
DENSE = "dense.faiss"
LEXICAL = "lexical"


@dataclass(frozen=True)
class DocumentInfo:
    doc_id: str
    path: str
    sha256: str
    chars: int
    chunks: int


@dataclass(frozen=True)
class Manifest:
    format_version: int
    fingerprint: str
    created_at: str
    build_seconds: float
    embed_model: str
    embed_dim: int
    token_encoding: str
    chunk_tokens: int
    chunk_overlap: int
    dense_index: str
    chunk_count: int
    documents: list[DocumentInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        docs = [DocumentInfo(**d) for d in data.get("documents", [])]
        return cls(**{**data, "documents": docs})


@dataclass(frozen=True)
class StoredIndex:
    """Everything the retriever needs, loaded once."""

    path: Path
    manifest: Manifest
    documents: dict[str, Document]
    chunks: list[Chunk]
    dense: Any  # faiss.Index
    lexical: Any  # bm25s.BM25


def read_manifest(index_dir: Path) -> Manifest:
    manifest_path = index_dir / MANIFEST
    if not manifest_path.is_file():
        raise IndexNotFoundError(
            f"no index at {index_dir}: build one with `rag index build [PATH ...]`"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest = Manifest.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise IndexMismatchError(
            f"the index at {index_dir} has an unreadable manifest ({exc}): "
            "rebuild it with `rag index build`"
        ) from None
    if manifest.format_version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index at {index_dir} has format {manifest.format_version}, this code reads "
            f"format {FORMAT_VERSION}: rebuild it with `rag index build`"
        )
    return manifest


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
    documents = {d.doc_id: d for d in map(_document, _read_jsonl(resolved / DOCUMENTS))}
    chunks = [_chunk(record) for record in _read_jsonl(resolved / CHUNKS)]
    dense = faiss.read_index(str(resolved / DENSE))
    lexical = bm25s.BM25.load(str(resolved / LEXICAL), show_progress=False)
    if dense.ntotal != len(chunks) or len(chunks) != manifest.chunk_count:
        raise IndexMismatchError(
            f"the index at {index_dir} is inconsistent ({dense.ntotal} vectors, {len(chunks)} "
            f"chunks, manifest says {manifest.chunk_count}): rebuild it with `rag index build`"
        )
    return StoredIndex(resolved, manifest, documents, chunks, dense, lexical)


def chunk_record(chunk: Chunk) -> dict[str, Any]:
    record = asdict(chunk)
    record["sentences"] = [list(span) for span in chunk.sentences]
    return record


def document_record(document: Document) -> dict[str, Any]:
    record = asdict(document)
    record["page_starts"] = list(document.page_starts)
    return record


def _chunk(record: dict[str, Any]) -> Chunk:
    return Chunk(**{**record, "sentences": tuple(tuple(s) for s in record["sentences"])})


def _document(record: dict[str, Any]) -> Document:
    return Document(**{**record, "page_starts": tuple(record["page_starts"])})


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
