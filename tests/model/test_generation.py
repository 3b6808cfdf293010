"""The answer format pieces that need no model: the JSON string scanner and the corpus layout."""

import re

from rag.answer.drafting import JsonStringScanner
from rag.answer.layouts import format_corpus
from rag.retrieval.store import StoredIndex
from tests.conftest import ARTICLE


def _scan(*pieces: bytes) -> tuple[JsonStringScanner, str]:
    scanner = JsonStringScanner()
    deltas = ""
    for piece in pieces:
        deltas += scanner.feed(piece)
        if scanner.closed:
            break
        scanner.read()
    return scanner, deltas


def test_the_string_ends_at_the_first_unescaped_quote() -> None:
    scanner, deltas = _scan(b"Tos", b"him", b"itsu", b' Motegi",', b' "cite"')
    assert scanner.closed
    assert scanner.text() == deltas == "Toshimitsu Motegi"
    assert scanner.pending == " Motegi"  # from the closing piece: not yet in the KV cache


def test_escaped_quotes_and_backslashes_stay_inside() -> None:
    scanner, deltas = _scan(b'the \\"Sho', b'ko\\" ', b'group \\\\', b' x"')
    assert scanner.text() == deltas == 'the "Shoko" group \\ x'


def test_an_escape_split_across_pieces_is_shown_only_when_complete() -> None:
    scanner = JsonStringScanner()
    assert scanner.feed(b"caf\\u00") == "caf"
    scanner.read()
    assert scanner.feed(b'e9 noir"') == "é noir"
    assert scanner.closed


def test_a_character_split_across_pieces_is_shown_only_when_complete() -> None:
    encoded = "東京".encode()
    scanner = JsonStringScanner()
    assert scanner.feed(encoded[:2]) == ""
    assert scanner.feed(encoded[2:]) == "東京"


def test_a_raw_newline_ends_the_string() -> None:
    scanner, deltas = _scan(b"Nagoya\n", b"more")
    assert scanner.closed and deltas == "Nagoya"


def test_an_invalid_escape_keeps_the_characters_as_written() -> None:
    scanner, _ = _scan(b'a \\x b"')
    assert scanner.text() == "a \\x b"


def test_the_corpus_layout_shows_every_sentence_once_in_order(article_index: StoredIndex) -> None:
    text, numbers = format_corpus(article_index.chunks)
    assert text.startswith("Document: gsomia_article.txt\n[1] ")
    assert list(numbers) == sorted(numbers) and numbers[1] is article_index.chunks[0]
    body = text.split("\n", 1)[1]
    shown = "".join(re.split(r"(?m)^\[\d+\] ", body))
    assert "".join(shown.split()) == "".join(ARTICLE.split())
    for n, chunk in numbers.items():
        assert f"[{n}] " in text and ARTICLE[chunk.start:chunk.end] == chunk.text
