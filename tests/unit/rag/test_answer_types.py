import pytest

from rag.answer.citations import question_focus
from rag.decision.answer_types import type_mismatch


@pytest.mark.parametrize(
    ("question", "answer", "wanted"),
    [
        ("How much compensation was paid?", "compensation for forced labor", "an amount"),
        ("How many chemicals were listed?", "three", None),
        ("How many soldiers came?", "30,000", None),
        ("How many outputs does it expect?", "a single output", None),
        ("In what year was the pact signed?", "1965", None),
        ("What year did the storm hit?", "last spring", "a year"),
        ("On what date will talks resume?", "Friday", "a date"),
        ("On what date will talks resume?", "Nov. 22", None),
        ("At what time of day was it announced?", "Friday", "a time of day"),
        ("What time did the train leave?", "6 p.m.", None),
        ("What time period did the empire span?", "the Middle Ages", None),
        ("What percentage of voters agreed?", "most voters", "a percentage"),
        ("Who is Japan's foreign minister?", "Toshimitsu Motegi", None),
    ],
)
def test_type_mismatch(question: str, answer: str, wanted: str | None) -> None:
    assert type_mismatch(question, answer) == wanted


@pytest.mark.parametrize(
    ("question", "focus"),
    [
        ("Which Japanese companies did the court order to pay?", "Japanese companies"),
        ("In which city is Doshisha University located?", "city"),
        ("What kind of talks did officials continue?", None),
        ("Who is Japan's foreign minister?", None),
    ],
)
def test_question_focus(question: str, focus: str | None) -> None:
    assert question_focus(question) == focus
