"""Documents sent to the service: typed by their content, stored under a name made here, held to
the limits, then added to the index incrementally (``index_build.build.add_sources``).

Uploaded files live in the index's documents folder (``documents_dir``), beside the index link,
as ``<slug of the name>-<sha256 prefix><suffix>``: the client's file name is kept as the display
name only, and no path from the client is ever used. The suffix comes from the content (magic
bytes, then a real parse), never from the name. A request is all or nothing: when any file is
refused, none is stored and the index stays exactly as it was. Content the index already holds
(same sha256) is not indexed twice. Everything happens under the index's build lock, so uploads,
removals and CLI builds are serialised across threads and processes; stored files no index
refers to (a crash between storing and swapping) are deleted at the next write.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from index_build.build import BuildResult, add_sources, remove_documents
from index_build.reading import OLE_MAGIC, SourceFile, old_word_file, read_document
from index_build.writing import build_lock, remove_leftovers
from rag.errors import (
    DocumentRejectedError,
    DocumentTooLargeError,
    IndexNotFoundError,
    InputError,
    StorageError,
    UnsupportedDocumentError,
)
from rag.files import write_atomically
from rag.retrieval import store
from rag.retrieval.embedder import Embedder
from rag.settings import Settings

MAX_NAME_CHARS = 200
# C0 and C1 controls, and the bidi controls that make "report\u202egpj.exe" show as "report
# exe.jpg": a name must look like what it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SLUG = re.compile(r"[^a-z0-9]+")
_HTML_START = re.compile(rb"\s*(<!doctype\s+html|<html|<head|<body)", re.IGNORECASE)
# What a refused binary file most likely is, for the message.
_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
               b"\x1f\x8b": "gzip data", b"PK\x03\x04": "a zip archive", b"\x7fELF": "a program",
               b"{\\rtf": "an RTF document"}

Refusal = tuple[type[DocumentRejectedError], str, str]  # kind, file name, reason
Planned = tuple["Upload", str, str]  # an upload to store, its display name, its suffix


@dataclass(frozen=True)
class Upload:
    name: str  # as the client sent it: untrusted, shown, never used as a path
    data: bytes

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Outcome:
    status: Literal["added", "duplicate"]
    document: store.DocumentInfo


def documents_dir(index_dir: Path) -> Path:
    """Where the service stores uploaded files: beside the index link, outside its builds."""
    return index_dir.parent / f"{index_dir.name}.documents"


def add_uploads(settings: Settings, uploads: Sequence[Upload], embedder: Embedder | None = None,
                on_stage: Callable[[str], None] = lambda stage: None) -> list[Outcome]:
    """Store and index ``uploads``; each comes back as added, or as a duplicate of the document
    already holding its content. Raises ``DocumentRejectedError`` (nothing stored) when any file
    is refused."""
    with build_lock(settings.index_dir):
        current = _current(settings.index_dir)
        folder = documents_dir(settings.index_dir)
        folder.mkdir(parents=True, exist_ok=True)
        _remove_unreferenced(folder, current)
        on_stage("checking")
        held = {d.sha256: d for d in current}
        fresh = _plan(uploads, held, settings)
        paths: list[Path] = []
        try:
            for upload, name, suffix in fresh:
                paths.append(_store(folder, upload, name, suffix))
            sources = _read_all(paths, [name for _, name, _ in fresh], settings, len(uploads))
            on_stage("indexing")
            result = add_sources(settings, sources, embedder) if sources else None
        except OSError as exc:
            _forget(paths)
            raise StorageError(exc) from None
        except BaseException:
            _forget(paths)
            raise
    return _outcomes(uploads, result, fresh, held)


def remove_documents_and_files(settings: Settings, doc_ids: Sequence[str]) -> BuildResult:
    """Drop documents from the index, and the stored uploads among them from the disk."""
    with build_lock(settings.index_dir):
        result = remove_documents(settings, doc_ids)
        _remove_unreferenced(documents_dir(settings.index_dir), result.manifest.documents)
        return result


def tidy_when_idle(index_dir: Path) -> None:
    """Delete what a killed build or upload left (staging folders, partial and unreferenced
    files), unless a writer is at work right now (then it is that writer's to tidy)."""
    with build_lock(index_dir, wait=False) as free:
        if not free:
            return
        remove_leftovers(index_dir)
        _remove_unreferenced(documents_dir(index_dir), _current(index_dir))


def display_name(name: str) -> str:
    """The client's file name as it may be shown; refused when it carries a path or control
    characters (a browser sends neither)."""
    shown = repr(name[:MAX_NAME_CHARS])[1:-1]
    if not name.strip():
        raise DocumentRejectedError([("(no name)", "a file was sent without a file name")], 1)
    if _CONTROL.search(name) or "/" in name or "\\" in name or name.strip() in {".", ".."}:
        raise DocumentRejectedError([(shown, (
            f"the file name '{shown}' holds a path or control characters: send the file "
            "under its own plain name"))], 1)
    return name.strip()[:MAX_NAME_CHARS]


def suffix_by_content(data: bytes, name: str) -> str:
    """``.pdf``, ``.docx``, ``.html``, ``.md`` or ``.txt`` as the content says; the name only
    tells Markdown from plain text, which no content can."""
    if b"%PDF-" in data[:1024]:  # readers accept a little junk before the header
        return ".pdf"
    if data.startswith(OLE_MAGIC):
        raise UnsupportedDocumentError([(name, old_word_file(name))], 1)
    if data.startswith(b"PK\x03\x04"):
        if b"word/document.xml" in data:
            return ".docx"
        raise UnsupportedDocumentError([(name, f"{name} is a zip archive, not a DOCX")], 1)
    if b"\x00" in data[:4096] or not _is_utf8(data):
        kind = next((what for magic, what in _SIGNATURES.items() if data.startswith(magic)),
                    "binary data")
        raise UnsupportedDocumentError([(name, (
            f"{name} is not a PDF, DOCX, HTML, Markdown or UTF-8 text file, whatever its name "
            f"says: its content looks like {kind}"))], 1)
    if _HTML_START.match(data.removeprefix(b"\xef\xbb\xbf")[:1024]):
        return ".html"
    return ".md" if Path(name).suffix.lower() in {".md", ".markdown"} else ".txt"


def stored_name(name: str, sha256: str, suffix: str) -> str:
    """``<slug of the name>-<12 hex of the checksum><suffix>``: readable, unique per content,
    made of ``[a-z0-9.-]`` only."""
    slug = _SLUG.sub("-", Path(name).stem.lower()).strip("-")[:60] or "document"
    return f"{slug}-{sha256[:12]}{suffix}"


def _plan(uploads: Sequence[Upload], held: dict[str, store.DocumentInfo], settings: Settings
          ) -> list[Planned]:
    """The uploads to store, under their display names and with their suffixes: content the
    index holds, or an earlier file of the request holds, is left out. Every refusal that needs
    no parse is raised here, before anything is written."""
    refused: list[Refusal] = []
    fresh: list[Planned] = []
    seen = set(held)
    for upload in uploads:
        try:
            name = display_name(upload.name)
            suffix = _checked(upload.data, name, settings)
        except DocumentRejectedError as exc:
            refused += [(type(exc), name, reason) for name, reason in exc.failures]
            continue
        if upload.sha256 not in seen:
            fresh.append((upload, name, suffix))
        seen.add(upload.sha256)
    room = max(0, settings.max_documents - len(held))
    refused += [(DocumentRejectedError, name, (
        f"{name} would be document {len(held) + room + i + 1} of the index, more than "
        f"the {settings.max_documents} it may hold (setting RAG_MAX_DOCUMENTS)"))
        for i, (_, name, _) in enumerate(fresh[room:])]
    _raise_if_any(refused, len(uploads))
    return fresh


def _raise_if_any(refused: list[Refusal], files: int) -> None:
    """One error for the whole request, of the first refusal's kind, listing every refusal."""
    if refused:
        raise refused[0][0]([(name, reason) for _, name, reason in refused], files)


def _checked(data: bytes, name: str, settings: Settings) -> str:
    if len(data) > settings.max_upload_bytes:
        raise DocumentTooLargeError([(name, (
            f"{name} is {len(data):,} bytes, more than the {settings.max_upload_bytes:,} "
            "allowed (setting RAG_MAX_UPLOAD_BYTES)"
        ))], 1)
    if not data.strip():
        raise DocumentRejectedError([(name, f"{name} is empty")], 1)
    return suffix_by_content(data, name)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _store(folder: Path, upload: Upload, name: str, suffix: str) -> Path:
    # Absolute: the manifest records this path, read later from any working directory.
    path = folder.resolve() / stored_name(name, upload.sha256, suffix)
    # A disk that fills up mid-file keeps no part of it.
    write_atomically(path, lambda partial: partial.write_bytes(upload.data))
    return path


def _read_all(paths: list[Path], names: list[str], settings: Settings, files: int
              ) -> list[SourceFile]:
    """The stored files, read once here (the build takes their text) and held to the page and
    character limits."""
    refused: list[Refusal] = []
    sources = []
    for path, name in zip(paths, names, strict=True):
        try:
            document = read_document(path, path.name, label=name,
                                     max_pages=settings.max_document_pages,
                                     max_chars=settings.max_document_chars)
        except InputError as exc:
            refused.append((DocumentRejectedError, name, str(exc)))
            continue
        sources.append(SourceFile(path, path.name, name, read=document))
    _raise_if_any(refused, files)
    return sources


def _outcomes(uploads: Sequence[Upload], result: BuildResult | None,
              fresh: list[Planned], held: dict[str, store.DocumentInfo]
              ) -> list[Outcome]:
    indexed = {d.sha256: d for d in result.manifest.documents} if result else held
    added = {upload.sha256 for upload, _, _ in fresh}
    outcomes, reported = [], set()
    for upload in uploads:
        status: Literal["added", "duplicate"] = (
            "added" if upload.sha256 in added and upload.sha256 not in reported
            else "duplicate")
        reported.add(upload.sha256)
        outcomes.append(Outcome(status, indexed.get(upload.sha256) or held[upload.sha256]))
    return outcomes


def _forget(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _current(index_dir: Path) -> list[store.DocumentInfo]:
    try:
        return store.read_manifest(index_dir).documents
    except IndexNotFoundError:
        return []


def _remove_unreferenced(folder: Path, documents: list[store.DocumentInfo]) -> None:
    """Stored uploads no document refers to, and partial writes: what a crash left. A stored
    name is unique (it carries the content's hash), so a file is kept when any document's path
    ends in its name: an older manifest's relative paths name no folder reliably."""
    if not folder.is_dir():
        return
    referenced = {Path(d.path).name for d in documents}
    for path in folder.iterdir():
        if path.is_file() and path.name not in referenced:
            path.unlink(missing_ok=True)
