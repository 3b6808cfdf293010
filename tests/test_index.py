import json
from pathlib import Path

import numpy as np
import pytest

from index_build import writing
from index_build.build import build_index
from rag import index_store
from rag.errors import IndexMismatchError, IndexNotFoundError, InputError
from rag.model_loading import Embedder
from rag.retrieval import Retriever
from rag.settings import BUNDLED_CORPUS
from tests.conftest import ARTICLE, make_settings


def _docs(tmp_path: Path, text: str = "Alpha beta gamma. Delta epsilon.") -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    (folder / "one.txt").write_text(text, encoding="utf-8")
    return folder


def test_round_trip(article_index: index_store.StoredIndex, embedder: Embedder) -> None:
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
    assert settings.index_dir.resolve() != target
    assert not target.exists()  # the replaced build is cleaned up


def test_interrupted_build_leaves_the_old_index_usable(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "index")
    build_index(settings, [_docs(tmp_path)], embedder)
    before = index_store.load_index(settings.index_dir, embedder.name)

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("power cut while writing the index")

    monkeypatch.setattr(writing, "dense_index", crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, [_docs(tmp_path, "Completely new text. Other words.")], embedder)
    monkeypatch.undo()

    after = index_store.load_index(settings.index_dir, embedder.name)
    assert after.path == before.path
    assert [c.text for c in after.chunks] == [c.text for c in before.chunks]
    leftovers = [p.name for p in tmp_path.glob(".index-*")]
    assert leftovers == [before.path.name], "a crashed build must not leave a half index behind"


def test_index_built_with_another_embedding_model_is_refused(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "index")
    build_index(settings, [_docs(tmp_path)], embedder)
    manifest_path = settings.index_dir / index_store.MANIFEST
    data = json.loads(manifest_path.read_text())
    data["embed_model"] = "some-other-model"
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(IndexMismatchError, match="some-other-model"):
        index_store.load_index(settings.index_dir, embedder.name)


def test_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="rag index build"):
        index_store.load_index(tmp_path / "nothing", "all-MiniLM-L6-v2")


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
    stored = index_store.load_index(settings.index_dir, embedder.name)
    assert hasattr(stored.dense, "nprobe")
    retriever = Retriever(stored, embedder, settings)
    assert any("Motegi" in p.chunk.text for p in retriever.search("Who is Toshimitsu Motegi?"))
