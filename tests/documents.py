"""Test corpora made on the fly: small text corpora, PDFs written by hand (pypdf reads but cannot
lay out text), DOCX files with python-docx; a counting wrapper around the embedder and a check
that two indexes hold the same thing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pypdf import PdfReader, PdfWriter

from rag.retrieval.embedder import Embedder
from rag.retrieval.search import Retriever
from rag.retrieval.store import StoredIndex
from rag.settings import Settings
from rag.types import Chunk

TOPICS = ["harbor", "orchard", "glacier", "violin", "satellite", "bakery", "canyon", "lantern"]
QUERIES = ["Which document is about the glacier?", "bakery bread ovens", "document number 117"]


def tiny_corpus(folder: Path, count: int) -> Path:
    """``count`` one-chunk documents, doc000.txt …, each naming its number and a topic."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        topic = TOPICS[n % len(TOPICS)]
        (folder / f"doc{n:03d}.txt").write_text(
            f"Document number {n} is about the {topic}. The {topic} appears in entry {n}.",
            encoding="utf-8",
        )
    return folder


def pdf_bytes(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: one page per item, each line of text drawn in Helvetica."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(len(pages))), len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        shown = " ".join(f"({_escaped(line)}) Tj T*" for line in lines)
        content = f"BT /F1 11 Tf 14 TL 72 720 Td {shown} ET".encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    return pdf_of(objects)


def pdf_of(objects: list[bytes]) -> bytes:
    """A PDF file of ``objects`` (numbered from 1; the first is the catalog), with its xref."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def _escaped(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    path.write_bytes(pdf_bytes(pages))
    return path


def write_encrypted_pdf(
    path: Path, pages: list[list[str]], user_password: str, owner_password: str = "owner"
) -> Path:
    """An encrypted PDF; with an empty ``user_password`` it opens without one (it only restricts
    copying and printing)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password, owner_password, algorithm="AES-128")
    with path.open("wb") as f:
        writer.write(f)
    return path


def write_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, text in enumerate(row):
                grid.cell(r, c).text = text
    document.save(str(path))
    return path


class CountingEmbedder(Embedder):
    """The real embedder, remembering every text it was asked to encode."""

    def __init__(self, inner: Embedder) -> None:  # shares the loaded model: no super().__init__
        self.inner = inner
        self.dim = inner.dim
        self.texts: list[str] = []

    def encode(
        self, texts: list[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        self.texts += texts
        return self.inner.encode(texts, batch_size, progress)


def indexed_texts(chunks: list[Chunk]) -> list[str]:
    """What indexing ``chunks`` embeds, in order: their texts, then their quotable spans."""
    return [c.text for c in chunks] + [c.slice(span) for c in chunks for span, _ in c.spans()]


def assert_spans_in_step(index: StoredIndex, embedder: Embedder) -> None:
    """Every chunk's stored span embeddings are those of its own spans, in order."""
    for chunk in index.chunks:
        rows = index.spans.of_chunk(chunk)
        assert rows is not None, chunk.chunk_id
        fresh = embedder.encode([chunk.slice(span) for span, _ in chunk.spans()])
        np.testing.assert_allclose(rows, fresh, atol=1e-5, err_msg=chunk.chunk_id)


def assert_same_index(
    built: StoredIndex, expected: StoredIndex, embedder: Embedder, settings: Settings
) -> None:
    """Same documents, chunks (ids, spans, sentences), vectors within 1e-5 and search results."""
    assert [(d.doc_id, d.sha256, d.text, d.page_starts) for d in built.documents.values()] == [
        (d.doc_id, d.sha256, d.text, d.page_starts) for d in expected.documents.values()
    ]
    assert built.chunks == expected.chunks
    np.testing.assert_allclose(
        built.dense.reconstruct_n(0, built.dense.ntotal),
        expected.dense.reconstruct_n(0, expected.dense.ntotal),
        atol=1e-5,
    )
    assert_spans_in_step(built, embedder)
    np.testing.assert_allclose(built.spans.vectors, expected.spans.vectors, atol=1e-5)
    for query in QUERIES:
        found = Retriever(built, embedder, settings).search(query, 8)
        wanted = Retriever(expected, embedder, settings).search(query, 8)
        assert [p.chunk.chunk_id for p in found] == [p.chunk.chunk_id for p in wanted], query
