"""Which words of a follow-up point back, and how a referent takes a word's place (model-free);
the model's choice of referent is tested on the real model (tests/model/test_pipeline.py)."""

import pytest

from rag.answer.followup import _as_replacement, _grounded, pointing_words, points_back
from rag.retrieval.lexical import terms
from rag.types import Turn

EARLIER = [Turn("user", "Who is Japan's foreign minister?"), Turn("assistant", "Toshimitsu Motegi")]


@pytest.mark.parametrize(("question", "words"), [
    ("Where did he speak to reporters?", ["he"]),
    ("What did they agree there?", ["they", "there"]),
    ("When was that?", ["that"]),
    ("What was that seen as?", ["that"]),
    ("Where is that professor's university?", []),  # "that" before a noun: kept as typed
    ("What did he say that Seoul must do?", ["he"]),  # a conjunction, not a pointer
    ("What is her field?", ["her"]),
])
def test_the_words_that_point_back(question: str, words: list[str]) -> None:
    assert [m.group(0) for m in pointing_words(question)] == words
    assert points_back(question, EARLIER) == bool(words)


@pytest.mark.parametrize("question", ["Where did Motegi speak to reporters?",
                                      "Which news agency quoted Kim You-geun?"])
def test_a_question_that_stands_alone_is_passed_through(question: str) -> None:
    assert not points_back(question, EARLIER)


def test_without_earlier_questions_nothing_is_rewritten() -> None:
    assert not points_back("Where did he speak to reporters?", [])
    assert not points_back("Where did he speak?", [Turn("assistant", "Hello")])


def test_a_referent_takes_the_word_s_grammatical_place() -> None:
    assert _as_replacement("his", "Yoichi Iida", True) == "Yoichi Iida's"
    assert _as_replacement("her", "Yuki Asaba", True) == "Yuki Asaba's"  # her field
    assert _as_replacement("her", "Yuki Asaba's", False) == "Yuki Asaba"  # quoted her
    assert _as_replacement("he", "Yoichi Iida", False) == "Yoichi Iida"
    assert _as_replacement("there", "in Nagoya", False) == "in Nagoya"


def test_a_referent_must_come_from_the_conversation() -> None:
    known = set(terms("Who is Japan's foreign minister? Toshimitsu Motegi"))
    assert _grounded("Toshimitsu Motegi", known)
    assert _grounded("Japan's foreign minister", known)
    assert not _grounded("Taro Kono", known)  # named nowhere before: not used
    assert not _grounded("", known)
