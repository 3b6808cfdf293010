import itertools

import pytest

from index_build.chunking import chunk_document, count_tokens, sentence_spans
from rag.types import Document
from tests.conftest import ARTICLE


def _doc(text: str) -> Document:
    return Document(doc_id="doc.txt", path="doc.txt", text=text, sha256="0")


def test_sentence_spans_golden() -> None:
    text = "The U.S. agreed. Seoul did not!\n\nA new paragraph starts here.  And ends."
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == [
        "The U.S. agreed.",
        "Seoul did not!",
        "A new paragraph starts here.",
        "And ends.",
    ]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(32, 0), (80, 20), (120, 30), (400, 100)])
def test_chunk_spans_slice_the_source_exactly(max_tokens: int, overlap: int) -> None:
    for chunk in chunk_document(_doc(ARTICLE), max_tokens, overlap):
        assert ARTICLE[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        for start, end in chunk.sentences:
            assert chunk.start <= start < end <= chunk.end


@pytest.mark.parametrize(("max_tokens", "overlap"), [(16, 0), (32, 8), (80, 20), (200, 0)])
def test_tokens_per_chunk_stay_within_the_limit(max_tokens: int, overlap: int) -> None:
    chunks = chunk_document(_doc(ARTICLE), max_tokens, overlap)
    assert chunks
    assert max(count_tokens(c.text) for c in chunks) <= max_tokens


def test_chunks_cover_every_sentence() -> None:
    chunks = chunk_document(_doc(ARTICLE), 80, 20)
    covered = {span for chunk in chunks for span in chunk.sentences}
    assert covered == set(sentence_spans(ARTICLE))


def test_consecutive_chunks_overlap_when_asked() -> None:
    without = chunk_document(_doc(ARTICLE), 80, 0)
    assert all(a.end <= b.start for a, b in itertools.pairwise(without))
    with_overlap = chunk_document(_doc(ARTICLE), 80, 30)
    assert any(b.start < a.end for a, b in itertools.pairwise(with_overlap))


def test_a_sentence_longer_than_the_limit_is_cut_at_token_boundaries() -> None:
    long_sentence = " ".join(f"word{i}" for i in range(300)) + "."
    text = f"Short one.\n\n{long_sentence}\n\nAnother short one."
    chunks = chunk_document(_doc(text), 40, 0)
    assert all(count_tokens(c.text) <= 40 for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert "".join("".join(c.text for c in chunks).split()) == "".join(text.split())


def test_unicode_and_offsets_survive() -> None:
    text = "Seoul’s “surprise” — announced Friday — held. Über-fast résumé café. 日本と韓国。"
    chunks = chunk_document(_doc(text), 20, 0)
    assert "".join(text[c.start : c.end] for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_empty_text_has_no_chunks() -> None:
    assert chunk_document(_doc("   \n\n  "), 80, 20) == []
