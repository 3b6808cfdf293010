"""The Ray engine: a local Ray instance builds the same index as the single-process builder.

Ray is a test dependency (`make test` installs the `ray` extra): without it these tests fail,
they never skip, so a CI machine missing it cannot pass silently.
"""

import sys
from pathlib import Path

import pytest

from eval.sample_files import write_docx, write_pdf
from index_build import distributed
from index_build.build import build_index
from rag.errors import InputError
from rag.retrieval import store
from rag.retrieval.embedder import Embedder
from tests.conftest import make_settings
from tests.documents import assert_same_index, tiny_corpus

PAGES = [["The harbor report opens here.", "Ships came and went."],
         ["The harbor master is Ingrid Solberg."]]


def test_a_ray_build_equals_the_local_build(tmp_path: Path, embedder: Embedder) -> None:
    import ray.data  # noqa: F401  (fails the test when the ray extra is missing)

    docs = tiny_corpus(tmp_path / "docs", 6)
    write_pdf(docs / "report.pdf", PAGES)
    write_docx(docs / "memo.docx", ["A memo about the bakery.", "It has two paragraphs."])
    local = make_settings(tmp_path / "local")
    build_index(local, [docs], embedder)
    on_ray = make_settings(tmp_path / "ray")
    result = build_index(on_ray, [docs], engine="ray")  # starts and stops a local Ray instance
    assert (result.manifest.engine, result.manifest.embedded_chunks) == ("ray", 8)
    built = store.load_index(on_ray.index_dir, embedder.name)
    expected = store.load_index(local.index_dir, embedder.name)
    assert_same_index(built, expected, embedder, local)
    assert built.documents["report.pdf"].page_starts == expected.documents["report.pdf"].page_starts


def test_the_ray_stages_pass_failures_through_as_rows(tmp_path: Path, embedder: Embedder) -> None:
    """The stage functions the pipeline runs, called directly on Arrow batches (no Ray needed)."""
    import pyarrow as pa
    good = write_pdf(tmp_path / "report.pdf", PAGES)
    (tmp_path / "empty.txt").write_bytes(b"")
    batch = pa.table({
        "doc_id": ["report.pdf", "empty.txt"],
        "path": ["shown/report.pdf", "shown/empty.txt"],
        "file": [str(good), str(tmp_path / "empty.txt")],
    })
    read = distributed.read_batch(batch, max_tokens=80, overlap_tokens=0)
    actor = object.__new__(distributed.ChunkEmbedder)  # an actor without loading a second model
    actor.embedder = embedder
    processed = distributed._collect(iter(actor(read).to_pylist()))
    assert processed.failures == [f"{tmp_path / 'empty.txt'} is empty"]
    [document] = processed.documents
    assert document.document.path == "shown/report.pdf"  # the index keeps the path as given
    assert document.document.page_starts == (0, len("\n".join(PAGES[0])) + 2)
    assert document.vectors.shape == (len(document.chunks), embedder.dim)


def test_without_ray_installed_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(InputError, match=r"pip install -e '\.\[ray\]'"):
        distributed._import_ray()


def test_an_address_needs_the_ray_engine(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(InputError, match="only applies to the Ray engine"):
        build_index(make_settings(tmp_path / "index"), [tiny_corpus(tmp_path / "docs", 1)],
                    embedder, address="ray://elsewhere:10001")
