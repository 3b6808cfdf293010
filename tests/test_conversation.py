"""Which follow-ups are rewritten (model-free); the rewrite itself is tested on the real model."""

import pytest

from rag.conversation import Turn, needs_rewrite

EARLIER = [Turn("user", "Who is Japan's foreign minister?"), Turn("assistant", "Toshimitsu Motegi")]


@pytest.mark.parametrize("question", ["Where did he speak to reporters?",
                                      "What did they agree there?", "When was that?"])
def test_a_question_pointing_back_is_rewritten(question: str) -> None:
    assert needs_rewrite(question, EARLIER)


@pytest.mark.parametrize("question", ["Where did Motegi speak to reporters?",
                                      "Which news agency quoted Kim You-geun?"])
def test_a_question_that_stands_alone_is_passed_through(question: str) -> None:
    assert not needs_rewrite(question, EARLIER)


def test_without_earlier_questions_nothing_is_rewritten() -> None:
    assert not needs_rewrite("Where did he speak to reporters?", [])
    assert not needs_rewrite("Where did he speak?", [Turn("assistant", "Hello")])
