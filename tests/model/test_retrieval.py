import threading
import time

import numpy as np
import pytest

from rag.retrieval.embedder import Embedder
from rag.retrieval.search import Retriever, fuse
from rag.retrieval.store import StoredIndex
from rag.settings import Settings


def test_reciprocal_rank_fusion_golden() -> None:
    dense = [0, 1, 2]
    lexical = [2, 0]
    fused = fuse([dense, lexical], [1.0, 1.0], rrf_k=60)
    assert [row for row, _ in fused] == [0, 2, 1]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    only_lexical = fuse([dense, lexical], [0.0, 1.0], rrf_k=60)
    assert [row for row, _ in only_lexical][:2] == [2, 0]


@pytest.mark.parametrize(
    ("question", "phrase"),
    [
        ("Who is Japan's foreign minister quoted in the article?", "Toshimitsu Motegi"),
        ("Which ministry does Yoichi Iida work for?", "Ministry of Economy, Trade and Industry"),
        ("What did the Supreme Court order Japanese firms to do?", "Supreme Court ordered"),
        ("Where does Yuki Asaba teach?", "Doshisha University"),
        ("What does GSOMIA let Tokyo and Seoul share?", "sensitive military secrets"),
        ("Who warned about sending a wrong message to Pyongyang?", "Taro Kono"),
    ],
)
def test_retrieval_finds_the_right_passage(
    article_index: StoredIndex, embedder: Embedder, settings: Settings, question: str, phrase: str
) -> None:
    passages = Retriever(article_index, embedder, settings).search(question)
    assert len(passages) == settings.top_k
    assert any(phrase in p.chunk.text for p in passages[:3]), [p.chunk.text for p in passages]
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)


def test_top_k_is_honoured(
    article_index: StoredIndex, embedder: Embedder, settings: Settings
) -> None:
    retriever = Retriever(article_index, embedder, settings)
    assert len(retriever.search("export controls", top_k=2)) == 2


def test_unrelated_question_scores_low(
    article_index: StoredIndex, embedder: Embedder, settings: Settings
) -> None:
    retriever = Retriever(article_index, embedder, settings)
    related = retriever.search("Why did Seoul keep the intelligence pact with Tokyo?")
    unrelated = retriever.search("How do I bake sourdough bread at home?")
    assert max(p.similarity for p in unrelated) < max(p.similarity for p in related)


def test_a_question_waits_behind_one_batch_of_an_upload_not_all_of_it(
        embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"Chunk {i} of a long upload about harbours and ferries. " * 4 for i in range(256)]
    finished: dict[str, float] = {}
    batch_started = threading.Event()
    encode = embedder._model.encode

    def signalling(*args: object, **kwargs: object) -> object:
        batch_started.set()
        return encode(*args, **kwargs)

    def upload() -> None:
        embedder.encode(texts)
        finished["upload"] = time.monotonic()

    monkeypatch.setattr(embedder._model, "encode", signalling)
    worker = threading.Thread(target=upload)
    worker.start()
    batch_started.wait()  # the upload holds the embedder for the first of its four batches
    question = embedder.encode(["Where do the ferries sail?"])
    finished["question"] = time.monotonic()
    worker.join()
    assert finished["question"] < finished["upload"]
    monkeypatch.undo()
    assert np.allclose(question, embedder.encode(["Where do the ferries sail?"]), atol=1e-6)
