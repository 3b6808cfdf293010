"""Candidate answers and computed answers, from recorded decoding steps and plain sentences (no
model): which shorter answers the greedy one passes through, how each is scored, and which
numbers follow from a passage."""

import math

import pytest

from rag.answer.arithmetic import answer_value, derive, listed_items, with_unit
from rag.answer.drafting import PREFIXES, JsonStringScanner, _candidates, _Writer
from rag.llm.engine import KvSequence


def _written(origin: str, pieces: list[str], closing: list[float], logprobs: list[float],
             closed: bool = True) -> _Writer:
    """A writer that read ``pieces`` (each one token) and then closed the string."""
    writer = _Writer(KvSequence(0, origin), origin)
    for piece in pieces:
        writer.texts.append(writer.scanner.text())
        writer.scanner.feed(piece.encode())
        writer.scanner.read()
    writer.logprobs = logprobs
    writer.closing = closing
    if closed:
        writer.texts.append(writer.scanner.text())
        writer.scanner.feed(b'"')
        writer.done = writer.closed = True
    return writer


def test_the_greedy_answer_its_word_prefixes_and_the_branches_are_candidates() -> None:
    greedy = _written("greedy", ["Dep", "uty", " director", " of", " the", " office"],
                      closing=[-9.0, -8.0, -1.0, -3.0, -7.0, -6.0, -0.1],
                      logprobs=[-0.1, -0.1, -0.2, -0.5, -0.1, -0.3])
    branch = _written("branch", ["Kim"], closing=[-9.0, -0.2], logprobs=[-2.0])
    candidates = _candidates([greedy, branch])
    assert candidates[0].text == "Deputy director of the office"
    assert candidates[0].logprob == pytest.approx(-1.3 - 0.1) and candidates[0].tokens == 7
    prefixes = [c for c in candidates if c.origin == "prefix"]
    # Closed where a new word starts, never inside "Deputy"; the likeliest first.
    assert [c.text for c in prefixes] == ["Deputy", "Deputy director",
                                          "Deputy director of the"][:PREFIXES]
    assert prefixes[1].logprob == pytest.approx(-0.4 - 3.0)
    assert candidates[-1].text == "Kim" and candidates[-1].origin == "branch"
    assert candidates[-1].logprob == pytest.approx(-2.2)


def test_a_candidate_is_given_once_and_an_unclosed_branch_is_not_one() -> None:
    greedy = _written("greedy", ["Nag", "oya"], closing=[-5.0, -4.0, -0.1],
                      logprobs=[-0.1, -0.1])
    same = _written("branch", [" Nagoya"], closing=[-6.0, -0.3], logprobs=[-3.0])
    cut = _written("branch", ["Tokyo", " and"], closing=[-6.0, -5.0], logprobs=[-3.0, -1.0],
                   closed=False)
    assert [c.text for c in _candidates([greedy, same, cut])] == ["Nagoya"]


def test_the_scanner_reads_a_json_string_piece_by_piece() -> None:
    scanner = JsonStringScanner()
    assert scanner.feed(b"Caf") == "Caf"
    assert scanner.feed(b"\\u00e9") == "é"
    assert scanner.feed(b' is \\"open') == ' is "open'
    assert scanner.feed(b'", "cite"') == ""
    assert scanner.closed and scanner.text() == 'Café is "open'


UNICODE = "The above string takes 24 bytes compared to the 6 bytes needed for an ASCII form."
TYPES = "The supported types are int, float, complex and decimal.Decimal."


@pytest.mark.parametrize(("question", "answer", "sentences", "how"), [
    ("How many more bytes does it take than ASCII?", "18 bytes", [UNICODE], "24 - 6"),
    ("How many bytes do the two take together?", "thirty", [UNICODE], "24 + 6"),
    ("How many numeric types support it?", "4", [TYPES], "4 items listed"),
    ("How many months after the vote did the strike begin?", "3 months",
     ["The union voted in November.", "The strike began in February."],
     "November to February"),
])
def test_a_computed_answer_is_derived_from_the_numbers_of_its_sentences(
        question: str, answer: str, sentences: list[str], how: str) -> None:
    derivation = derive(question, answer, sentences)
    assert derivation is not None and derivation.how == how


def test_only_an_amount_question_answered_by_one_number_is_computed() -> None:
    assert derive("Which encoding takes 18 bytes?", "18", [UNICODE]) is None  # not an amount
    assert derive("How many more bytes?", "17", [UNICODE]) is None  # follows from nothing
    assert derive("How many more bytes?", "18 bytes or so, in UTF-32", [UNICODE]) is None
    # Numbers of something else are not the inputs.
    assert derive("How many more bits?", "18", [UNICODE]) is None
    assert derive("How many years apart?", "18", [UNICODE]) is None
    # Only the sentences closest to the question hold inputs.
    assert derive("How many more bytes?", "18", ["a", "b", "c", UNICODE]) is None


def test_numbers_lists_and_units_are_read_as_written() -> None:
    assert answer_value("9,822") == (9822.0, "")
    assert answer_value("twelve elements") == (12.0, "elements")
    assert answer_value("Python 3.1") is None
    assert listed_items("No list here.") == 0
    assert listed_items("Use pipes, shared memory or sockets; never files.") == 3
    assert with_unit("How many years passed?", "20") == "20 years"
    assert with_unit("How many years passed?", "20 years") == "20 years"
    assert with_unit("What is the port?", "443") == "443"
    assert math.isclose(answer_value("about 2.5")[0], 2.5)  # type: ignore[index]
