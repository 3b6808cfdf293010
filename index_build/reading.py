"""Reading documents from disk: ``.txt``, ``.md`` and ``.html`` files, or folders of them.

Text and Markdown are kept exactly as decoded, so citation offsets index the file's own text.
HTML is reduced to its visible text first; offsets then index that extracted text, which the
index stores so quotes can always be checked against it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

from rag.errors import InputError
from rag.types import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES


def read_documents(paths: Iterable[Path]) -> list[Document]:
    """Read every supported file under ``paths``; ids are paths relative to the given root."""
    documents: dict[str, Document] = {}
    for root in paths:
        for path, doc_id in files_under(Path(root)):
            if doc_id in documents:
                raise InputError(f"two documents would share the id {doc_id!r}: rename one of them")
            documents[doc_id] = read_document(path, doc_id)
    if not documents:
        shown = ", ".join(str(p) for p in paths)
        raise InputError(
            f"no readable documents in {shown} "
            f"(supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})"
        )
    return list(documents.values())


def read_document(path: Path, doc_id: str) -> Document:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}): convert it first") from None
    text = html_to_text(decoded) if path.suffix.lower() in HTML_SUFFIXES else decoded
    return Document(
        doc_id=doc_id,
        path=str(path),
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


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
