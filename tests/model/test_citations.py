from pathlib import Path

import pytest

from eval.sample_files import write_pdf
from index_build.chunking import chunk_document
from index_build.reading import read_document
from rag.answer.citations import CitationChecker
from rag.retrieval.embedder import Embedder
from rag.retrieval.store import StoredIndex
from rag.types import Passage
from tests.conftest import ARTICLE


def _passages(index: StoredIndex, *phrases: str) -> list[Passage]:
    """The chunks holding each phrase, in that order, as retrieved passages."""
    chosen = []
    for phrase in phrases:
        chunk = next(c for c in index.chunks if phrase in c.text)
        chosen.append(Passage(chunk=chunk, score=0.0, similarity=0.5))
    return chosen


@pytest.fixture(scope="module")
def checker(embedder: Embedder, article_index: StoredIndex) -> CitationChecker:
    return CitationChecker(embedder, min_support=0.5, documents=article_index.documents)


def test_supported_citation_quotes_the_exact_sentence(
    checker: CitationChecker, article_index: StoredIndex
) -> None:
    passages = _passages(article_index, "Toshimitsu Motegi", "Doshisha University")
    report = checker.check(
        "Who is Japan's foreign minister?", "Toshimitsu Motegi", [1], passages
    )
    [citation] = report.citations
    assert "Motegi" in citation.quote
    assert ARTICLE[citation.start : citation.end] == citation.quote
    assert citation.quote.startswith("Later in the day, Foreign Minister Toshimitsu Motegi")
    assert citation.chunk_id == passages[0].chunk.chunk_id
    assert citation.page is None  # a text file has no pages


def test_citation_to_an_unrelated_passage_is_dropped(
    checker: CitationChecker, article_index: StoredIndex
) -> None:
    passages = _passages(article_index, "Toshimitsu Motegi", "Doshisha University")
    report = checker.check("Who is Japan's foreign minister?", "Toshimitsu Motegi", [2], passages)
    assert [c.chunk_id for c in report.citations] == [passages[0].chunk.chunk_id]


def test_forgotten_supporting_passage_is_added(
    checker: CitationChecker, article_index: StoredIndex
) -> None:
    passages = _passages(article_index, "Doshisha University", "ballistic missiles")
    report = checker.check(
        "What secrets does GSOMIA let Tokyo and Seoul share?",
        "ballistic missiles and nuclear development programs",
        [],
        passages,
    )
    assert [c.chunk_id for c in report.citations] == [passages[1].chunk.chunk_id]
    assert "ballistic missiles" in report.citations[0].quote


def test_an_answer_that_only_repeats_the_question_is_an_echo(
    checker: CitationChecker, article_index: StoredIndex
) -> None:
    passages = _passages(article_index, "Yonhap")
    echo = checker.check("What is the name of the Yonhap reporter?", "Yonhap", [1], passages)
    assert echo.echoes_question
    choice = checker.check("Did it happen before or after?", "before", [1], passages)
    assert not choice.echoes_question


def test_an_answer_that_restates_what_is_asked_for_is_an_echo(
    checker: CitationChecker, article_index: StoredIndex
) -> None:
    passages = _passages(article_index, "Supreme Court")
    question = "Which Japanese companies did the court order to pay?"
    assert checker.check(question, "Japanese firms", [1], passages).echoes_question
    named = checker.check("Which court ordered firms to pay?", "Supreme Court", [1], passages)
    assert not named.echoes_question


def test_out_of_range_and_duplicate_numbers_never_become_citations(
    checker: CitationChecker, article_index: StoredIndex
) -> None:
    passages = _passages(article_index, "Toshimitsu Motegi")
    report = checker.check("Who is Japan's foreign minister?", "Motegi", [1, 1, 7], passages)
    assert [c.id for c in report.citations] == [1]


def test_a_citation_into_a_pdf_names_the_page_its_quote_starts_on(
    embedder: Embedder, tmp_path: Path
) -> None:
    pages = [
        ["Annual report of the harbor authority.", "Ships arrived all year."],
        ["The harbor master is Ingrid Solberg.", "She took office in March."],
        ["The budget grew by four percent."],
    ]
    document = read_document(write_pdf(tmp_path / "report.pdf", pages), "report.pdf")
    passages = [Passage(chunk, 0.0, 0.5) for chunk in chunk_document(document, 80, 0)]
    checker = CitationChecker(embedder, min_support=0.5, documents={"report.pdf": document})
    report = checker.check("Who is the harbor master?", "Ingrid Solberg", [1], passages)
    [citation] = report.citations
    assert citation.quote == "The harbor master is Ingrid Solberg."
    assert document.text[citation.start : citation.end] == citation.quote
    assert citation.page == 2
