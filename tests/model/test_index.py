import json
from pathlib import Path

import numpy as np
import pytest

from eval.sample_files import write_encrypted_pdf, write_pdf
from index_build import writing
from index_build.build import add_documents, build_index, remove_documents
from rag.errors import (
    IndexMismatchError,
    IndexNotFoundError,
    InputError,
    UnreadableDocumentsError,
)
from rag.retrieval import store
from rag.retrieval.embedder import Embedder
from rag.retrieval.search import Retriever
from rag.settings import BUNDLED_CORPUS
from tests.conftest import ARTICLE, make_settings
from tests.documents import CountingEmbedder, assert_same_index, indexed_texts, tiny_corpus


def _docs(tmp_path: Path, text: str = "Alpha beta gamma. Delta epsilon.") -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    (folder / "one.txt").write_text(text, encoding="utf-8")
    return folder


def test_round_trip(article_index: store.StoredIndex, embedder: Embedder) -> None:
    manifest = article_index.manifest
    assert manifest.embed_model == "all-MiniLM-L6-v2"
    assert manifest.chunk_count == len(article_index.chunks) == article_index.dense.ntotal
    assert manifest.documents[0].doc_id == "gsomia_article.txt"
    assert article_index.documents["gsomia_article.txt"].text == ARTICLE
    for row, chunk in enumerate(article_index.chunks):
        assert ARTICLE[chunk.start : chunk.end] == chunk.text
        stored = article_index.dense.reconstruct(row)
        np.testing.assert_allclose(stored, embedder.encode([chunk.text])[0], atol=1e-5)


def test_rebuilding_an_unchanged_corpus_is_a_noop(tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(tmp_path / "index")
    first = build_index(settings, [BUNDLED_CORPUS], embedder)
    target = settings.index_dir.resolve()
    second = build_index(settings, [BUNDLED_CORPUS], embedder)
    assert (first.status, second.status) == ("built", "unchanged")
    assert settings.index_dir.resolve() == target
    changed = build_index(settings.replace(chunk_tokens=60), [BUNDLED_CORPUS], embedder)
    assert changed.status == "built"
    assert changed.manifest.reused_chunks == 0  # other chunk settings: nothing can be reused
    assert settings.index_dir.resolve() != target
    assert not target.exists()  # the replaced build is cleaned up


def test_interrupted_build_leaves_the_old_index_usable(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "index")
    build_index(settings, [_docs(tmp_path)], embedder)
    before = store.load_index(settings.index_dir, embedder.name)

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("power cut while writing the index")

    monkeypatch.setattr(writing, "dense_index", crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, [_docs(tmp_path, "Completely new text. Other words.")], embedder)
    monkeypatch.undo()

    after = store.load_index(settings.index_dir, embedder.name)
    assert after.path == before.path
    assert [c.text for c in after.chunks] == [c.text for c in before.chunks]
    leftovers = [p.name for p in tmp_path.glob(".index-*")]
    assert leftovers == [before.path.name], "a crashed build must not leave a half index behind"


def test_index_built_with_another_embedding_model_is_refused(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "index")
    build_index(settings, [_docs(tmp_path)], embedder)
    _edit_manifest(settings.index_dir, embed_model="some-other-model")
    with pytest.raises(IndexMismatchError, match="some-other-model"):
        store.load_index(settings.index_dir, embedder.name)


def test_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="rag index build"):
        store.load_index(tmp_path / "nothing", "all-MiniLM-L6-v2")


def test_a_foreign_folder_at_the_index_path_is_not_overwritten(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "index")
    settings.index_dir.mkdir()
    (settings.index_dir / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an index link"):
        build_index(settings, [_docs(tmp_path)], embedder)
    assert (settings.index_dir / "precious.txt").read_text() == "keep me"


def test_approximate_index_above_the_threshold(tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(tmp_path / "index", ann_threshold=5)
    result = build_index(settings, [BUNDLED_CORPUS], embedder)
    assert result.manifest.dense_index.startswith("ivf")
    stored = store.load_index(settings.index_dir, embedder.name)
    assert hasattr(stored.dense, "nprobe")
    retriever = Retriever(stored, embedder, settings)
    assert any("Motegi" in p.chunk.text for p in retriever.search("Who is Toshimitsu Motegi?"))


EXTRA = (
    "The extra document arrived late. It describes a lighthouse keeper who counts ships.\n\n"
    "Every night the keeper writes the number of ships into a ledger. The ledger has 400 pages."
)


def test_adding_a_document_embeds_only_its_chunks_and_equals_a_full_rebuild(
    tmp_path: Path, embedder: Embedder
) -> None:
    folder = tiny_corpus(tmp_path / "docs", 200)
    settings = make_settings(tmp_path / "index")
    counting = CountingEmbedder(embedder)
    build_index(settings, [folder], counting)
    assert counting.texts == indexed_texts(store.load_index(settings.index_dir,
                                                            embedder.name).chunks)

    (folder / "extra.txt").write_text(EXTRA, encoding="utf-8")
    counting.texts.clear()
    result = add_documents(settings, [folder / "extra.txt"], counting)
    added = store.load_index(settings.index_dir, embedder.name)
    extra_chunks = [c for c in added.chunks if c.source == "extra.txt"]
    assert counting.texts == indexed_texts(extra_chunks) and extra_chunks
    m = result.manifest
    assert (m.embedded_chunks, m.reused_chunks, m.removed) == (len(extra_chunks), 200, [])
    assert [d.doc_id for d in m.documents if not d.reused] == ["extra.txt"]

    rebuilt = make_settings(tmp_path / "rebuilt")
    build_index(rebuilt, [folder], embedder)
    expected = store.load_index(rebuilt.index_dir, embedder.name)
    assert_same_index(added, expected, embedder, settings)
    assert added.manifest.fingerprint == expected.manifest.fingerprint


def test_rebuilding_reuses_unchanged_documents_and_embeds_a_changed_one(
    tmp_path: Path, embedder: Embedder
) -> None:
    folder = tiny_corpus(tmp_path / "docs", 12)
    settings = make_settings(tmp_path / "index")
    build_index(settings, [folder], embedder)
    (folder / "doc005.txt").write_text(EXTRA, encoding="utf-8")
    counting = CountingEmbedder(embedder)
    result = build_index(settings, [folder], counting)
    changed = store.load_index(settings.index_dir, embedder.name)
    assert counting.texts == indexed_texts([c for c in changed.chunks if c.source == "doc005.txt"])
    assert changed.documents["doc005.txt"].text == EXTRA
    assert [d.doc_id for d in result.manifest.documents if not d.reused] == ["doc005.txt"]
    assert result.manifest.reused_chunks == 11

    rebuilt = make_settings(tmp_path / "rebuilt")
    build_index(rebuilt, [folder], embedder)
    expected = store.load_index(rebuilt.index_dir, embedder.name)
    assert_same_index(changed, expected, embedder, settings)


def test_removing_documents_embeds_nothing_and_drops_them_everywhere(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tiny_corpus(tmp_path / "docs", 12)
    settings = make_settings(tmp_path / "index")
    build_index(settings, [folder], embedder)

    def no_embedding(*args: object) -> None:
        raise AssertionError("removing documents must not load or run the embedder")

    monkeypatch.setattr("index_build.build.Embedder", no_embedding)
    result = remove_documents(settings, ["doc003.txt", "doc011.txt"])
    monkeypatch.undo()
    assert result.manifest.removed == ["doc003.txt", "doc011.txt"]
    assert (result.manifest.embedded_chunks, result.manifest.reused_chunks) == (0, 10)
    removed = store.load_index(settings.index_dir, embedder.name)
    assert "doc003.txt" not in removed.documents
    retriever = Retriever(removed, embedder, settings)
    assert retriever.lexical_search("entry 3", 20)  # "entry" is in every document
    assert all(removed.chunks[row].source != "doc003.txt"
               for row in retriever.lexical_search("3", 20))

    (folder / "doc003.txt").unlink()
    (folder / "doc011.txt").unlink()
    rebuilt = make_settings(tmp_path / "rebuilt")
    build_index(rebuilt, [folder], embedder)
    expected = store.load_index(rebuilt.index_dir, embedder.name)
    assert_same_index(removed, expected, embedder, settings)


def test_removing_an_unknown_document_changes_nothing(tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(tmp_path / "index")
    build_index(settings, [tiny_corpus(tmp_path / "docs", 3)], embedder)
    before = settings.index_dir.resolve()
    with pytest.raises(InputError, match=r"has no document 'nope\.txt'.*rag index list"):
        remove_documents(settings, ["doc001.txt", "nope.txt"])
    with pytest.raises(InputError, match="would leave an empty index"):
        remove_documents(settings, ["doc000.txt", "doc001.txt", "doc002.txt"])
    assert settings.index_dir.resolve() == before
    assert len(store.load_index(settings.index_dir, embedder.name).documents) == 3


def test_removing_from_no_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="rag index build"):
        remove_documents(make_settings(tmp_path / "index"), ["a.txt"])


def test_adding_to_no_index_starts_one_and_adding_again_is_a_noop(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "index")
    folder = tiny_corpus(tmp_path / "docs", 2)
    assert add_documents(settings, [folder], embedder).status == "built"
    assert add_documents(settings, [folder / "doc001.txt"], embedder).status == "unchanged"


def test_adding_keeps_the_index_chunk_settings(tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(tmp_path / "index", chunk_tokens=40, chunk_overlap=0)
    build_index(settings, [tiny_corpus(tmp_path / "docs", 2)], embedder)
    (tmp_path / "extra.txt").write_text(EXTRA, encoding="utf-8")
    result = add_documents(make_settings(tmp_path / "index"), [tmp_path / "extra.txt"], embedder)
    assert (result.manifest.chunk_tokens, result.manifest.chunk_overlap) == (40, 0)
    assert result.manifest.reused_chunks == 2


def test_an_index_made_by_another_chunker_is_rebuilt_not_extended(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "index")
    folder = tiny_corpus(tmp_path / "docs", 3)
    build_index(settings, [folder], embedder)
    _edit_manifest(settings.index_dir, chunker="sentences-old")
    with pytest.raises(IndexMismatchError, match=r"chunker 'sentences-old'.*rag index build"):
        add_documents(settings, [folder], embedder)
    result = build_index(settings, [folder], embedder)
    assert (result.manifest.embedded_chunks, result.manifest.reused_chunks) == (3, 0)


def test_unreadable_files_fail_the_build_and_leave_the_index_alone(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "index")
    folder = tiny_corpus(tmp_path / "docs", 3)
    build_index(settings, [folder], embedder)
    before = settings.index_dir.resolve()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4 nothing else")
    write_encrypted_pdf(folder / "secret.pdf", [["Hidden text."]], user_password="pw")
    (folder / "extra.txt").write_text(EXTRA, encoding="utf-8")
    counting = CountingEmbedder(embedder)
    wanted = "3 of 7 file.s. could not be read"
    with pytest.raises(UnreadableDocumentsError, match=wanted) as error:
        build_index(settings, [folder], counting)
    failures = error.value.failures
    assert len(failures) == 3
    for name, why in [("corrupt.pdf", "as PDF"), ("empty.txt", "is empty"),
                      ("secret.pdf", "needs a password")]:
        assert [f for f in failures if name in f and why in f], (name, failures)
    assert counting.texts == []  # nothing is embedded once a file failed
    assert settings.index_dir.resolve() == before
    assert [p.name for p in tmp_path.glob(".index-*")] == [before.name]


def test_pdf_pages_survive_the_index(tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(tmp_path / "index")
    pdf = write_pdf(tmp_path / "report.pdf", [["First page."], ["Second page."]])
    build_index(settings, [pdf], embedder)
    stored = store.load_index(settings.index_dir, embedder.name).documents["report.pdf"]
    assert stored.page_starts == (0, len("First page.") + 2)
    assert stored.page_at(stored.text.index("Second")) == 2


def test_an_index_of_the_old_format_is_refused_with_a_rebuild_hint(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "index")
    build_index(settings, [_docs(tmp_path)], embedder)
    _edit_manifest(settings.index_dir, format_version=1, engine=None)
    expected = f"format 1, this code reads format {store.FORMAT_VERSION}"
    with pytest.raises(IndexMismatchError, match=expected):
        store.load_index(settings.index_dir, embedder.name)
    assert build_index(settings, [_docs(tmp_path)], embedder).status == "built"


@pytest.mark.parametrize("damage", ["truncate", "change", "remove"])
def test_a_damaged_index_is_refused_on_loading_and_rebuilt(
    tmp_path: Path, embedder: Embedder, damage: str
) -> None:
    settings = make_settings(tmp_path / "index")
    build_index(settings, [BUNDLED_CORPUS], embedder)
    dense = settings.index_dir.resolve() / store.DENSE
    if damage == "truncate":
        dense.write_bytes(dense.read_bytes()[:-10])
    elif damage == "change":
        chunks = settings.index_dir.resolve() / store.CHUNKS
        chunks.write_text(chunks.read_text().replace("Motegi", "Mootegi"))
    else:
        dense.unlink()
    with pytest.raises(IndexMismatchError, match="damaged"):
        store.load_index(settings.index_dir, embedder.name)
    assert build_index(settings, [BUNDLED_CORPUS], embedder).status != "unchanged"
    store.load_index(settings.index_dir, embedder.name)  # whole again


def _edit_manifest(index_dir: Path, **fields: object) -> None:
    """Change fields of a built index's manifest, as another version of the builder would have
    written them."""
    manifest_path = index_dir / store.MANIFEST
    data = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**data, **fields}))
