"""The article's gold set: well-formed, and every evidence string is verbatim article text."""

from pathlib import Path

from eval.gold import load_gold, select
from eval.metrics import contains_answer
from tests.conftest import ARTICLE

GOLD = Path(__file__).resolve().parent.parent / "eval" / "gold" / "article.jsonl"


def test_gold_set_size_and_mix() -> None:
    items = load_gold(GOLD)
    assert len(items) >= 60
    assert sum(not item.answerable for item in items) >= 12


def test_every_evidence_string_occurs_in_the_article_verbatim() -> None:
    for item in load_gold(GOLD):
        for evidence in item.evidence:
            assert evidence in ARTICLE, (item.id, evidence)


def test_answerable_items_have_answers_their_evidence_contains() -> None:
    for item in load_gold(GOLD):
        if item.answerable:
            assert item.answers and item.evidence, item.id
            assert contains_answer(" ".join(item.evidence), item.answers), item.id
        else:
            assert not item.answers and not item.evidence, item.id


def test_sample_is_fixed_by_its_seed() -> None:
    items = load_gold(GOLD)
    assert select(items, None, 10, 13) == select(items, None, 10, 13)
    assert select(items, None, 10, 13) != select(items, None, 10, 14)
    assert len(select(items, 5, None, 13)) == 5
