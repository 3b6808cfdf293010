"""Metrics on hand-made cases, with values worked out by hand."""

import pytest

from eval.gate import Check, evaluate, load_bounds
from eval.metrics import (
    Located,
    QuestionOutcome,
    best_f1,
    compute,
    contains_answer,
    normalize_answer,
    percentile,
)

EVIDENCE = (Located("doc", 100, 150),)


def outcome(
    answerable: bool = True,
    answer: str = "Toshimitsu Motegi",
    refused: bool = False,
    citations: tuple[Located, ...] = (Located("doc", 120, 140),),
    passages: tuple[Located, ...] = (Located("doc", 0, 90), Located("doc", 90, 200)),
    latency: float = 1.0,
) -> QuestionOutcome:
    return QuestionOutcome(
        answerable=answerable,
        golds=("Toshimitsu Motegi", "Motegi") if answerable else (),
        answer=answer,
        refused=refused,
        citations=citations,
        passages=passages,
        evidence=EVIDENCE if answerable else (),
        latency_s=latency,
    )


def test_squad_normalization() -> None:
    assert normalize_answer("The  U.S.-Japan “Alliance”!") == "usjapan alliance"
    assert contains_answer("It was the World Trade Organization.", ["world trade organization"])
    assert contains_answer("weapons", ["weapon"])
    assert not contains_answer("Japan", ["North Korea"])


def test_token_f1() -> None:
    assert best_f1("Toshimitsu Motegi", ["Motegi"]) == pytest.approx(2 / 3)
    assert best_f1("nothing", ["Motegi"]) == 0.0
    assert best_f1("Motegi", ["x", "Motegi"]) == 1.0


def test_all_metrics_on_a_small_run() -> None:
    outcomes = [
        outcome(latency=1.0),  # right, cited right, evidence retrieved at rank 2
        outcome(answer="Taro Kono", citations=(Located("doc", 10, 20),), latency=2.0),
        outcome(refused=True, answer="The documents do not say.", citations=(), latency=3.0),
        outcome(answerable=False, refused=True, answer="no", citations=(), latency=4.0),
        outcome(answerable=False, answer="Moon Jae-in", citations=(), latency=5.0),
    ]
    m = compute(outcomes)
    assert m["answer_str_em"] == pytest.approx(1 / 3)
    assert m["answer_f1"] == pytest.approx(1 / 3)
    assert m["refusal_accuracy"] == pytest.approx(1 / 2)
    assert m["false_refusal_rate"] == pytest.approx(1 / 3)
    assert m["citation_precision"] == pytest.approx(1 / 2)
    assert m["citation_recall"] == pytest.approx(1 / 3)
    assert m["retrieval_recall_at_k"] == 1.0
    assert m["mrr"] == pytest.approx(1 / 2)
    assert m["latency_p50_s"] == 3.0
    assert m["latency_p95_s"] == pytest.approx(4.8)


def test_silent_model_has_zero_citation_precision_and_no_unanswerables_is_na() -> None:
    m = compute([outcome(citations=())])
    assert m["citation_precision"] == 0.0
    assert m["refusal_accuracy"] is None


def test_percentile_edges() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([2.0], 95) == 2.0


def test_gate_checks_minimums_and_maximums() -> None:
    bounds = {"min": {"answer_str_em": 0.85}, "max": {"false_refusal_rate": 0.1}}
    checks = evaluate({"answer_str_em": 0.9, "false_refusal_rate": 0.2}, bounds)
    assert [(c.metric, c.passed) for c in checks] == [
        ("answer_str_em", True), ("false_refusal_rate", False),
    ]
    assert Check("refusal_accuracy", None, 0.8, "min").passed


def test_default_thresholds_respect_the_project_floor() -> None:
    bounds = load_bounds("default")["min"]
    assert bounds["answer_str_em"] >= 0.85
    assert bounds["refusal_accuracy"] >= 0.80
    assert bounds["citation_precision"] >= 0.90
