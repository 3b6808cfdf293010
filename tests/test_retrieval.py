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
