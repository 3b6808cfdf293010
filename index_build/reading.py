"""Reading documents from disk: ``.txt``, ``.md``, ``.html``, ``.pdf`` and ``.docx`` files, or
folders of them.

Text and Markdown are kept exactly as decoded, so citation offsets index the file's own text.
HTML, PDF and DOCX are reduced to their text first; offsets then index that extracted text, which
the index stores so quotes can always be checked against it. A PDF's pages are joined by a blank
line (so no sentence, and no quote, runs across a page break) and the offset where each page
starts is kept, which gives every citation its page.

A file that cannot be read (unreadable, not UTF-8, corrupt, encrypted, empty) raises
``InputError`` with a message naming it; the builder collects those and reports them all.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import InputError
from rag.types import Document

if TYPE_CHECKING:
    from pypdf import PageObject

# Part of the index recipe: a change to how text is extracted must read documents again.
READER_VERSION = "reading-2"
TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
DOCX_SUFFIXES = {".docx"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | DOCX_SUFFIXES
_KINDS = {".txt": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html",
          ".pdf": "pdf", ".docx": "docx"}
PAGE_SEPARATOR = "\n\n"
# Compound File Binary: what an encrypted .docx (or an old binary .doc renamed) really is.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# A DOCX is a zip that python-docx inflates in full: more than this, declared by its members, is
# refused unread (a zip bomb inflates a few hundred kilobytes to gigabytes). Zip readers stop at a
# member's declared size, so a member cannot inflate past what it declares.
MAX_DOCX_INFLATED_BYTES = 256 * 1024 * 1024
# python-docx builds the whole XML tree of a part it reads, about 30 bytes of memory per byte of
# it: an XML part larger than this is refused before it is parsed (2 million characters of text,
# the upload limit, take far less even with heavy formatting). Any part, whatever its name: the
# package's relationships, not the name word/document.xml, say which part is the body.
MAX_DOCX_XML_BYTES = 48 * 1024 * 1024
# A PDF page's content stream (its drawing operators, text among them), decompressed. A page of
# text takes kilobytes, a dense vector drawing a few megabytes; pypdf parses it in Python at about
# 5 s per megabyte here, with the GIL held, so a longer one is refused before its text is read.
MAX_PDF_PAGE_CONTENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    """A supported file to index, with the document id it gets (its path below the given root)."""

    path: Path
    doc_id: str
    name: str | None = None  # the name to list it under, when not its id (an upload's own name)
    read: Document | None = None  # its text when already read (an upload, checked on arrival)


def read_documents(paths: Iterable[Path]) -> list[Document]:
    """Read every supported file under ``paths``; the first unreadable file raises."""
    return [read_document(source.path, source.doc_id) for source in find_files(paths)]


def find_files(paths: Iterable[Path]) -> list[SourceFile]:
    """Every supported file under ``paths``; ids are paths relative to the given root."""
    paths = list(paths)
    found: dict[str, SourceFile] = {}
    for root in paths:
        for path, doc_id in files_under(Path(root)):
            if doc_id in found:
                raise InputError(f"two documents would share the id {doc_id!r}: rename one of them")
            found[doc_id] = SourceFile(path, doc_id)
    if not found:
        shown = ", ".join(str(p) for p in paths)
        raise InputError(
            f"no readable documents in {shown} "
            f"(supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})"
        )
    return list(found.values())


def kind_of(path: Path) -> str:
    """The format a supported file is read as: txt, md, html, pdf or docx."""
    return _KINDS.get(path.suffix.lower(), "")


def file_sha256(path: Path) -> str:
    """The checksum that tells whether a document changed since the last build."""
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def read_document(
    path: Path, doc_id: str, label: str | None = None, max_pages: int | None = None,
    max_chars: int | None = None,
) -> Document:
    """The document at ``path``; errors name it ``label`` (an uploaded file's own name) or its
    path. A PDF of more than ``max_pages`` pages is refused before its text is extracted, and
    its extraction stops at the first page past ``max_chars`` characters."""
    shown = label or str(path)
    raw = _read_bytes(path)
    if not raw:
        raise InputError(f"{shown} is empty")
    suffix = path.suffix.lower()
    page_starts: tuple[int, ...] = ()
    if suffix in PDF_SUFFIXES:
        text, page_starts = pdf_text(raw, shown, max_pages, max_chars)
    elif suffix in DOCX_SUFFIXES:
        text = docx_text(raw, shown)
    else:
        decoded = _decoded(raw, shown)
        text = html_to_text(decoded) if suffix in HTML_SUFFIXES else decoded
    check_length(len(text), max_chars, shown)
    if not text.strip():
        hint = " (a scanned PDF needs OCR first)" if suffix in PDF_SUFFIXES else ""
        raise InputError(f"{shown} has no text to index{hint}")
    return Document(
        doc_id=doc_id,
        path=str(path),
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
        page_starts=page_starts,
    )


def check_length(chars: int, max_chars: int | None, shown: str) -> None:
    """Raise InputError when a document's ``chars`` of text are more than ``max_chars``."""
    if max_chars is not None and chars > max_chars:
        raise InputError(f"{shown} holds {chars:,} characters of text, more than the "
                         f"{max_chars:,} allowed (setting RAG_MAX_DOCUMENT_CHARS)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _decoded(raw: bytes, shown: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{shown} is not UTF-8 text (byte {exc.start}): convert it first") from None


def files_under(root: Path) -> list[tuple[Path, str]]:
    """The supported files at ``root`` (a file or a folder) with their document ids."""
    if not root.exists():
        raise InputError(f"no such file or folder: {root}")
    if root.is_file():
        if root.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise InputError(
                f"{root}: unsupported file type {root.suffix or '(none)'!r} "
                f"(supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})"
            )
        return [(root, root.name)]
    return [
        (path, path.relative_to(root).as_posix())
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and path.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]


def pdf_text(
    raw: bytes, shown: str, max_pages: int | None = None, max_chars: int | None = None
) -> tuple[str, tuple[int, ...]]:
    """The text of every page, pages joined by a blank line, and where each page starts. Pages
    may share one large content stream: the character limit is checked after each page."""
    from pypdf import PdfReader

    # pypdf logs the oddities it repairs as warnings; the build reports what failed itself.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(raw))
        # Many PDFs are encrypted only to restrict printing or copying: they open with an empty
        # password. Only those that need a real password are refused.
        locked = reader.is_encrypted and not reader.decrypt("")
        count = 0 if locked else len(reader.pages)
        too_long = max_pages is not None and count > max_pages
        pages: list[str] = []
        chars = 0
        for number, page in enumerate([] if locked or too_long else reader.pages, start=1):
            _check_page_content(page, number, shown)
            pages.append((page.extract_text() or "").strip())
            chars += len(pages[-1]) + len(PAGE_SEPARATOR)
            check_length(chars - len(PAGE_SEPARATOR), max_chars, shown)
    except InputError:
        raise
    except Exception as exc:  # a parser of arbitrary files fails in many ways; one file's fault
        raise InputError(f"cannot read {shown} as PDF: {str(exc) or type(exc).__name__}") from None
    if locked:
        raise InputError(f"{shown} is an encrypted PDF that needs a password: remove it first")
    if too_long:
        raise InputError(f"{shown} has {count} pages, more than the {max_pages} allowed "
                         "(setting RAG_MAX_DOCUMENT_PAGES)")
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(pages), tuple(starts)


def _check_page_content(page: PageObject, number: int, shown: str) -> None:
    """Refuse a page whose content stream is too long to extract text from in reasonable time
    (pages sharing one huge stream would each parse all of it, holding the GIL meanwhile)."""
    contents = page.get_contents()
    size = len(contents.get_data()) if contents is not None else 0
    if size > MAX_PDF_PAGE_CONTENT_BYTES:
        raise InputError(f"{shown}'s page {number} has {size / 2**20:.0f} MB of content, more "
                         f"than the {MAX_PDF_PAGE_CONTENT_BYTES // 2**20} MB a PDF page may: "
                         "refused before its text is extracted")


def old_word_file(shown: str) -> str:
    """Why a file in the OLE container (an old .doc, or a password-protected .docx) is refused."""
    return (f"{shown} is a password-protected or old binary Word file: "
            "save it as an unencrypted .docx first")


def docx_text(raw: bytes, shown: str) -> str:
    """Paragraphs and table rows in document order, one paragraph each."""
    import docx
    from docx.table import Table

    if raw.startswith(OLE_MAGIC):
        raise InputError(old_word_file(shown))
    _refuse_zip_bomb(raw, shown)
    try:
        blocks: list[str] = []
        for block in docx.Document(io.BytesIO(raw)).iter_inner_content():
            if isinstance(block, Table):
                # A merged cell is repeated in every position it spans: show it once per row.
                blocks += [
                    " | ".join(dict.fromkeys(cell.text for cell in row.cells)) for row in block.rows
                ]
            else:
                blocks.append(block.text)
    except Exception as exc:  # corrupt or foreign zip files fail in many ways; one file's fault
        raise InputError(f"cannot read {shown} as DOCX: {str(exc) or type(exc).__name__}") from None
    return "\n\n".join(" ".join(b.split()) for b in blocks if b.strip())


def _refuse_zip_bomb(raw: bytes, shown: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
            inflated = sum(member.file_size for member in members)
            if inflated > MAX_DOCX_INFLATED_BYTES:
                raise InputError(
                    f"{shown} inflates to {inflated / 2**20:.0f} MB, more than the "
                    f"{MAX_DOCX_INFLATED_BYTES / 2**20:.0f} MB a DOCX may (a zip bomb?): "
                    "refused unread")
            for member in members:
                if member.file_size > MAX_DOCX_XML_BYTES and _is_xml(archive, member):
                    raise InputError(
                        f"{shown}'s XML part {member.filename} is "
                        f"{member.file_size / 2**20:.0f} MB, more than the "
                        f"{MAX_DOCX_XML_BYTES / 2**20:.0f} MB a DOCX may: refused unread")
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InputError(f"cannot read {shown} as DOCX: {exc}") from None


def _is_xml(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bool:
    """Whether a member starts as XML does (only its first bytes are inflated): media do not."""
    with archive.open(member) as part:
        return part.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "header", "footer", "blockquote", "pre", "hr", "title",
}
_SKIPPED_TAGS = {"script", "style", "noscript", "template", "head"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._current: list[str] = []
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED_TAGS and self._skip_depth:
            self._skip_depth -= 1
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title or not self._skip_depth:
            self._current.append(data)

    def _flush(self) -> None:
        block = " ".join("".join(self._current).split())
        if block:
            self.blocks.append(block)
        self._current = []

    def text(self) -> str:
        self._flush()
        return "\n\n".join(self.blocks)


def html_to_text(html: str) -> str:
    """Visible text of an HTML page, one paragraph per block element."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()
