"""The article's gold sets (tuning and sealed test split): well-formed, evidence verbatim."""

import re
from pathlib import Path

import pytest

from eval.gold import load_gold, select
from eval.metrics import contains_answer
from tests.conftest import ARTICLE

GOLD_DIR = Path(__file__).resolve().parent.parent / "eval" / "gold"
GOLD = GOLD_DIR / "article.jsonl"
TEST_SPLIT = GOLD_DIR / "article_test.jsonl"
CONVERSATIONS = GOLD_DIR / "conversation.jsonl"
SETS = ([GOLD, TEST_SPLIT, CONVERSATIONS], ["tuning", "test", "conversation"])


def test_gold_set_size_and_mix() -> None:
    items = load_gold(GOLD)
    assert len(items) >= 60
    assert sum(not item.answerable for item in items) >= 12


def test_test_split_size_and_mix() -> None:
    items = load_gold(TEST_SPLIT)  # load_gold also rejects an id that appears twice
    assert len({item.id for item in items}) == len(items)
    assert len(items) >= 80
    assert sum(not item.answerable for item in items) >= 30


def test_test_split_shares_no_question_with_the_tuning_set() -> None:
    tuning = {_plain(item.question) for item in load_gold(GOLD)}
    assert not [item.id for item in load_gold(TEST_SPLIT) if _plain(item.question) in tuning]


@pytest.mark.parametrize("gold", SETS[0], ids=SETS[1])
def test_every_evidence_string_occurs_in_the_article_verbatim(gold: Path) -> None:
    for item in load_gold(gold):
        for evidence in item.evidence:
            assert evidence in ARTICLE, (item.id, evidence)


@pytest.mark.parametrize("gold", SETS[0], ids=SETS[1])
def test_answerable_items_have_answers_their_evidence_contains(gold: Path) -> None:
    for item in load_gold(gold):
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


def _plain(question: str) -> str:
    return " ".join(question.casefold().split())


def test_every_conversation_case_is_a_follow_up() -> None:
    items = load_gold(CONVERSATIONS)
    assert len(items) >= 10
    for item in items:
        assert [role for role, _ in item.history] == ["user", "assistant"], item.id


def _six_word_runs(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + 6]) for i in range(len(words) - 5)}


def test_no_prompt_or_rule_quotes_a_gold_question() -> None:
    """Prompt examples and rule patterns are written apart from the gold sets: none may share
    a run of six words with a tuning or test question."""
    project = GOLD_DIR.parent.parent
    sources = [*sorted((project / "prompts").glob("*.txt")),
               *sorted((project / "rag").glob("*.py"))]
    runs = {path.name: _six_word_runs(path.read_text(encoding="utf-8")) for path in sources}
    for item in [*load_gold(GOLD), *load_gold(TEST_SPLIT)]:
        quoted = {name for name, found in runs.items() if _six_word_runs(item.question) & found}
        assert not quoted, f"{item.id} is quoted in {sorted(quoted)}"
