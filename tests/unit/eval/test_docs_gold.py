"""The Debian documents' gold sets (eval/gold/fit, eval/gold/sealed): one per document, in the
split the corpus builder drew, well-formed, evidence verbatim, the mix the trust issue asks for,
and no question quoted by a prompt or a rule."""

import re

import pytest

from eval.debian_docs import SOURCES, sealed_names
from eval.gold import GoldItem, load_gold
from eval.metrics import contains_answer
from rag.settings import PROJECT_ROOT

PROJECT = PROJECT_ROOT
GOLD = PROJECT / "eval" / "gold"
DOCS = PROJECT / "eval" / "docs"
NAMES = [s.name for s in SOURCES]


def _split(name: str) -> str:
    return "sealed" if name in sealed_names() else "fit"


def _items(name: str) -> list[GoldItem]:
    return load_gold(GOLD / _split(name) / f"{name}.jsonl")


def test_every_document_has_one_gold_set_in_its_split() -> None:
    found = {p.stem: p.parent.name for p in GOLD.glob("*/*.jsonl")}
    assert found == {name: _split(name) for name in NAMES}
    genres = {s.genre for s in SOURCES}
    assert len(genres) >= 2 and len(NAMES) >= 8
    # One sealed document per genre, and at least three in all.
    assert {s.genre for s in SOURCES if s.name in sealed_names()} == genres
    assert len(sealed_names()) >= 3
    assert {p.stem for p in DOCS.glob("*.txt")} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_document_s_questions_are_about_it_and_quote_it(name: str) -> None:
    text = (DOCS / f"{name}.txt").read_text(encoding="utf-8")
    for item in _items(name):
        assert item.doc == name, item.id
        assert item.kind is not None, item.id
        for evidence in item.evidence:
            assert evidence in text, (item.id, evidence[:60])
        if not item.answerable:
            assert not item.answers and not item.evidence, item.id
        elif item.kind == "fact":  # a computed answer follows from its evidence, not in it
            assert contains_answer(" ".join(item.evidence), item.answers), item.id


@pytest.mark.parametrize("name", NAMES)
def test_a_document_s_mix_of_questions(name: str) -> None:
    items = _items(name)
    unanswerable = [i for i in items if not i.answerable]
    assert len(items) >= 30
    assert len(unanswerable) * 3 >= len(items)
    assert sum(i.kind == "tempting" for i in unanswerable) * 2 >= len(unanswerable)
    assert sum(i.kind == "computed" for i in items) >= 2


def _six_word_runs(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + 6]) for i in range(len(words) - 5)}


def test_no_prompt_or_rule_quotes_a_document_question() -> None:
    sources = [*sorted((PROJECT / "prompts").glob("*.txt")),
               *sorted((PROJECT / "rag").rglob("*.py"))]
    runs = {str(p.relative_to(PROJECT)): _six_word_runs(p.read_text(encoding="utf-8"))
            for p in sources}
    for name in NAMES:
        for item in _items(name):
            asked = _six_word_runs(item.question)
            quoted = {source for source, found in runs.items() if asked & found}
            assert not quoted, f"{item.id} is quoted in {sorted(quoted)}"
