"""The article's gold sets: well-formed, evidence verbatim, the sealed ones independent of tuning.

Tuning data: ``article.jsonl``, ``article_tune2.jsonl`` (the first sealed test split; it chose
a default once, so it is tuning data now) and ``conversation.jsonl``. Sealed, report-only:
``article_test_v2.jsonl`` and ``conversation_test.jsonl``.
"""

import json
import re

import pytest

from eval.gold import GoldItem, load_gold, near_duplicates, select
from eval.metrics import contains_answer
from rag.retrieval.embedder import Embedder
from rag.settings import PROJECT_ROOT
from tests.conftest import ARTICLE
from tests.gold_review import REMOVED

GOLD_DIR = PROJECT_ROOT / "eval" / "gold"
TUNING = ["article.jsonl", "article_tune2.jsonl", "conversation.jsonl"]
SEALED = ["article_test_v2.jsonl", "conversation_test.jsonl"]
ALL = TUNING + SEALED


def _items(*names: str) -> list[GoldItem]:
    return [item for name in names for item in load_gold(GOLD_DIR / name)]


def test_the_gold_folder_holds_exactly_the_known_sets() -> None:
    """A new gold file must be classed as tuning or sealed here, so the checks below cover it."""
    assert sorted(p.name for p in GOLD_DIR.glob("*.jsonl")) == sorted(ALL)


def _records(name: str) -> list[dict[str, object]]:
    lines = (GOLD_DIR / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _computed(name: str) -> set[object]:
    return {r["id"] for r in _records(name) if r.get("kind") == "computed"}


def test_tuning_split_size_and_mix() -> None:
    items = _items("article.jsonl")
    assert len(items) >= 60
    assert sum(not item.answerable for item in items) >= 12


def test_sealed_split_size_and_mix() -> None:
    records = _records("article_test_v2.jsonl")
    items = _items("article_test_v2.jsonl")  # load_gold also rejects an id that appears twice
    unanswerable = [r for r in records if not r["answerable"]]
    assert len(items) >= 80
    assert len(unanswerable) >= 30
    assert sum(r.get("kind") == "tempting" for r in unanswerable) * 2 >= len(unanswerable)
    assert {r.get("kind") for r in unanswerable} <= {"tempting", "absent"}


def test_no_sealed_question_paraphrases_a_tuning_question(embedder: Embedder) -> None:
    """Not string equality: a question within the paraphrase thresholds of any tuning question
    (by meaning or by shared words; eval.gold.near_duplicates) would measure what was tuned."""
    sealed, tuning = _items(*SEALED), _items(*TUNING)
    found = near_duplicates(sealed, tuning, embedder)
    assert not found, [(d.question.id, d.other.id, round(d.cosine, 2)) for d in found]
    assert not [d for d in near_duplicates(_items(SEALED[1]), _items(SEALED[0]), embedder)]


def test_the_check_finds_the_paraphrases_it_was_set_by(embedder: Embedder) -> None:
    """The pairs of the first test split found to paraphrase tuning questions: all caught."""
    tune2 = {item.id: item for item in _items("article_tune2.jsonl")}
    tuning = {item.id: item for item in _items("article.jsonl")}
    pairs = [("t81", "u08"), ("t80", "u09"), ("t37", "a64"), ("t13", "a50"), ("t02", "a47"),
             ("t17", "a52")]
    for test_id, tuning_id in pairs:
        assert near_duplicates([tune2[test_id]], [tuning[tuning_id]], embedder), test_id
    unrelated = [tuning["a03"]]  # the day of the announcement
    assert not near_duplicates([tune2["t81"]], unrelated, embedder)


@pytest.mark.parametrize("name", ALL)
def test_every_evidence_string_occurs_in_the_article_verbatim(name: str) -> None:
    for item in _items(name):
        for evidence in item.evidence:
            assert evidence in ARTICLE, (item.id, evidence)


@pytest.mark.parametrize("name", ALL)
def test_answerable_items_have_answers_their_evidence_contains(name: str) -> None:
    computed = _computed(name)  # "how many years passed": the evidence holds the two years
    for item in _items(name):
        if item.answerable:
            assert item.answers and item.evidence, item.id
            assert item.id in computed or contains_answer(" ".join(item.evidence), item.answers), \
                item.id
        else:
            assert not item.answers and not item.evidence, item.id


@pytest.mark.parametrize("name", ALL)
def test_no_gold_answer_is_only_a_stem_of_the_texts_word(name: str) -> None:
    """Whole-word matching: "escalate" never matches "escalated". A one-word alternative whose
    inflection the evidence uses, but not the word itself, needs the inflected form too, or the
    very words of the text would be scored wrong."""
    for item in _items(name):
        evidence = " ".join(item.evidence)
        single = [a for a in item.answers if isinstance(a, str) and " " not in a.strip()]
        for word in single:
            inflected = [word + end for end in ("s", "es", "d", "ed", "ing")]
            used = [form for form in inflected if contains_answer(evidence, [form])]
            if used and not contains_answer(evidence, [word]):
                assert contains_answer(evidence, item.answers), (item.id, word, used)
                assert set(used) & set(single), (item.id, word, used)


@pytest.mark.parametrize("name", sorted(REMOVED))
def test_the_gold_answer_review_stays_applied(name: str) -> None:
    """Partial answers removed by the review (docs/gold-review.md) do not come back."""
    items = {item.id: item for item in _items(name)}
    for item_id, removed in REMOVED[name].items():
        strings = {a for a in items[item_id].answers if isinstance(a, str)}
        assert not strings & set(removed), (item_id, strings & set(removed))


def test_every_conversation_case_is_a_follow_up() -> None:
    for name in ("conversation.jsonl", "conversation_test.jsonl"):
        items = _items(name)
        assert len(items) >= 10
        for item in items:
            assert [role for role, _ in item.history] == ["user", "assistant"], item.id


def test_sample_is_fixed_by_its_seed() -> None:
    items = _items("article.jsonl")
    assert select(items, None, 10, 13) == select(items, None, 10, 13)
    assert select(items, None, 10, 13) != select(items, None, 10, 14)
    assert len(select(items, 5, None, 13)) == 5


def _six_word_runs(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + 6]) for i in range(len(words) - 5)}


def test_no_prompt_or_rule_quotes_a_gold_question() -> None:
    """Prompt examples and rule patterns are written apart from the gold sets: none may share
    a run of six words with any gold question or conversation turn, tuning or sealed."""
    project = GOLD_DIR.parent.parent
    sources = [*sorted((project / "prompts").glob("*.txt")),
               *sorted((project / "rag").rglob("*.py"))]
    runs = {str(path.relative_to(project)): _six_word_runs(path.read_text(encoding="utf-8"))
            for path in sources}
    for item in _items(*ALL):
        texts = [item.question, *(text for role, text in item.history if role == "user")]
        asked = set().union(*(_six_word_runs(text) for text in texts))
        quoted = {name for name, found in runs.items() if asked & found}
        assert not quoted, f"{item.id} is quoted in {sorted(quoted)}"
