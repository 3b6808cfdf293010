"""Test corpora made on the fly (small text corpora; files of other formats come from
``eval.sample_files``), a counting wrapper around the embedder, a check that two indexes hold the
same thing, and what an upload test needs: the state a refused upload must leave, a zip bomb, an
upload killed mid-write."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np

from index_build.uploads import documents_dir
from rag.retrieval import store
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


def state(settings: Settings) -> tuple[str, str, list[str]]:
    """What must not change when an upload is refused: the build, its manifest, stored files."""
    build = settings.index_dir.resolve()
    stored = documents_dir(settings.index_dir)
    files = sorted(p.name for p in stored.iterdir()) if stored.is_dir() else []
    manifest = hashlib.sha256((build / store.MANIFEST).read_bytes()).hexdigest()
    return build.name, manifest, files


def zip_bomb() -> bytes:
    """A DOCX-looking zip of a few hundred kilobytes that inflates to 300 MB."""
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (300 * 2**20))
    return packed.getvalue()


KILLED_MID_WRITE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from index_build import writing
    from index_build.uploads import Upload, add_uploads
    from tests.conftest import make_settings

    real = writing._write_jsonl
    def die(path, records):
        real(path, records)
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies with the build half written
    writing._write_jsonl = die
    add_uploads(make_settings(Path(sys.argv[1])), [Upload("owls.txt", b"Owls hunt at night.")])
""")


def kill_mid_write(settings: Settings) -> None:
    """An upload in a child process, killed (SIGKILL) in the middle of writing the index."""
    child = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(settings.index_dir)],
                           capture_output=True, text=True, timeout=300,
                           cwd=Path(__file__).resolve().parent.parent)
    assert child.returncode == -9, child.stderr[-2000:]
