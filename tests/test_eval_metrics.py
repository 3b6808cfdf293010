"""Metrics on hand-made cases, with values worked out by hand; the gates' bounds."""

import json
from pathlib import Path

import pytest

from eval.gate import Check, evaluate, load_bounds
from eval.metrics import (
    METRIC_NAMES,
    RATE_METRICS,
    Located,
    QuestionOutcome,
    best_f1,
    compute,
    contains_answer,
    counts,
    exact_match,
    normalize_answer,
    percentile,
    wilson,
)
from eval.report import format_value, markdown, summary_table
from rag.errors import InputError

EVIDENCE = (Located("doc", 100, 150),)
RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"


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
    assert not contains_answer("Japan", ["North Korea"])


def test_answer_str_em_matches_whole_words_only() -> None:
    assert not contains_answer("19101", ["1910"])
    assert not contains_answer("Yoichi Iidax", ["Iida"])
    assert not contains_answer("weapons", ["weapon"])
    assert contains_answer("It began in 1910.", ["1910"])
    assert contains_answer("Japan's 1910-45 colonial rule", ["1910"])  # a hyphen breaks words
    assert contains_answer("pressure from the U.S.", ["US"])  # SQuAD joins "U.S." into "us"
    assert contains_answer("the US", ["U.S."])
    assert contains_answer("Mr. Yoichi Iida, director-general", ["Iida", "nobody"])
    assert contains_answer("Ministry of Economy, Trade and Industry", ["economy trade"])
    assert not contains_answer("trade and economy", ["economy trade"])  # a run, in order
    assert not contains_answer("anything", [""])


def test_a_gold_with_parts_needs_every_part() -> None:
    both = ("ballistic", "nuclear")
    assert contains_answer("its ballistic missiles and nuclear programs", [both])
    assert contains_answer("nuclear and ballistic", [both])  # in any order
    assert not contains_answer("ballistic missiles", [both])  # half an answer
    assert contains_answer("ballistic missiles", [both, "ballistic missiles"])
    assert exact_match("ballistic and nuclear", [both])
    assert best_f1("ballistic and nuclear", [both]) == 1.0


def test_answer_em_is_squad_exact_match() -> None:
    assert exact_match("The Yonhap.", ["Yonhap", "Yonhap news agency"])
    assert exact_match("yonhap news agency", ["Yonhap", "Yonhap news agency"])
    assert not exact_match("It was Yonhap.", ["Yonhap"])
    assert not exact_match("", [""])


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
        # Answered although unanswerable: its citation is a wrong one.
        outcome(answerable=False, answer="Moon Jae-in", citations=(Located("doc", 100, 110),),
                latency=5.0),
    ]
    m = compute(outcomes)
    assert list(m) == list(METRIC_NAMES)
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["answer_em"] == pytest.approx(1 / 3)
    assert m["answer_str_em"] == pytest.approx(1 / 3)
    assert m["answer_f1"] == pytest.approx(1 / 3)
    assert m["refusal_accuracy"] == pytest.approx(1 / 2)
    assert m["false_refusal_rate"] == pytest.approx(1 / 3)
    assert m["citation_precision"] == pytest.approx(1 / 3)
    assert m["citation_recall"] == pytest.approx(1 / 3)
    assert m["retrieval_recall_at_k"] == 1.0
    assert m["mrr"] == pytest.approx(1 / 2)
    assert m["latency_p50_s"] == 3.0
    assert m["latency_p95_s"] == pytest.approx(4.8)
    assert counts(outcomes) == {
        "accuracy": (2, 5),
        "answer_em": (1, 3),
        "answer_str_em": (1, 3),
        "refusal_accuracy": (1, 2),
        "false_refusal_rate": (1, 3),
        "citation_precision": (1, 3),
        "citation_recall": (1, 3),
        "retrieval_recall_at_k": (3, 3),
    }
    assert set(counts(outcomes)) == set(RATE_METRICS)


def test_right_answer_in_more_words_passes_str_em_not_em() -> None:
    outcomes = [outcome(answer="It was Toshimitsu Motegi."), outcome(answer="Motegi")]
    m = compute(outcomes)
    assert m["answer_str_em"] == 1.0
    assert m["answer_em"] == pytest.approx(1 / 2)
    assert m["accuracy"] == 1.0


def test_refused_unanswerable_citations_are_not_counted() -> None:
    m = compute([outcome(), outcome(answerable=False, refused=True, answer="no")])
    assert m["citation_precision"] == 1.0
    assert m["accuracy"] == 1.0


def test_silent_model_has_zero_citation_precision_and_no_unanswerables_is_na() -> None:
    m = compute([outcome(citations=())])
    assert m["citation_precision"] == 0.0
    assert m["refusal_accuracy"] is None


def test_percentile_edges() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([2.0], 95) == 2.0


def test_wilson_score_interval() -> None:
    low, high = wilson(56, 64)  # worked by hand: center 0.8538, half-width 0.0815
    assert (low, high) == (pytest.approx(0.77225, abs=1e-5), pytest.approx(0.93528, abs=1e-5))
    assert wilson(1, 2) == (pytest.approx(0.09453, abs=1e-5), pytest.approx(0.90547, abs=1e-5))
    assert wilson(0, 10) == (0.0, pytest.approx(0.27753, abs=1e-5))
    assert wilson(10, 10) == (pytest.approx(0.72247, abs=1e-5), 1.0)
    assert wilson(0, 0) is None


def test_rates_print_with_count_and_interval() -> None:
    assert format_value(0.875, (56, 64)) == "0.875 (56/64) [0.77, 0.94]"
    assert format_value(None, (0, 0)) == "n/a (0/0)"
    assert format_value(3.031) == "3.031"
    values = {name: 0.5 for name in METRIC_NAMES} | {"latency_p50_s": 3.0}
    table = summary_table(values, [], {"answer_str_em": (2, 4)})
    assert "| answer_str_em | 0.500 (2/4) [0.15, 0.85] |" in table
    assert "| latency_p50_s | 3.000 |" in table


def test_markdown_report_carries_counts_and_lists_real_failures_first() -> None:
    row = {"id": "t1", "question": "Who?", "gold_answers": ["Motegi", ["Toshimitsu", "Motegi"]],
           "answer": "It was Motegi",
           "refused": False, "refusal_reason": None, "citations": [],
           "pass": {"answer_em": False, "answer_str_em": True, "refusal": True}}
    result = {name: 1.0 for name in METRIC_NAMES} | {
        "gold": "g.jsonl", "model": "m", "prompt": "p", "n": 1, "created_at": "now",
        "duration_s": 1.0, "counts": {"answer_str_em": [1, 1]}, "per_question": [row],
    }
    text = markdown(result, [])
    assert "| answer_str_em | 1.000 (1/1) [0.21, 1.00] |" in text
    assert "## Failures (0)" in text
    assert "- missed, though right by answer_str_em: answer_em" in text
    assert "- expected: Motegi, Toshimitsu + Motegi" in text  # a gold with parts


def test_gate_checks_minimums_and_maximums() -> None:
    bounds = {"min": {"answer_str_em": 0.85}, "max": {"false_refusal_rate": 0.1}}
    checks = evaluate({"answer_str_em": 0.9, "false_refusal_rate": 0.2}, bounds)
    assert [(c.metric, c.passed) for c in checks] == [
        ("answer_str_em", True), ("false_refusal_rate", False),
    ]
    assert checks[1].describe() == "false_refusal_rate 0.200 vs max 0.1"


def test_gate_fails_a_bound_on_a_metric_the_run_did_not_measure() -> None:
    unmeasured = Check("refusal_accuracy", None, 0.8, "min")
    assert not unmeasured.passed
    assert "refusal_accuracy not measured" in unmeasured.describe()
    bounds = {"min": {"refusal_accuracy": 0.8, "accuracy": 0.5}}
    checks = evaluate({"refusal_accuracy": None}, bounds)  # None, and missing altogether
    assert [(c.metric, c.value, c.passed) for c in checks] == [
        ("refusal_accuracy", None, False), ("accuracy", None, False),
    ]
    with pytest.raises(InputError, match="threshold for unknown metric 'answer_exact'"):
        evaluate({"answer_exact": 1.0}, {"min": {"answer_exact": 0.5}})


def test_thresholds_load_by_section(tmp_path: Path) -> None:
    custom = tmp_path / "t.toml"
    custom.write_text("[x.min]\nanswer_em = 0.5\n")
    assert load_bounds("x", custom) == {"min": {"answer_em": 0.5}, "max": {}}
    with pytest.raises(InputError, match="no \\[y\\] section"):
        load_bounds("y", custom)


def test_the_default_model_s_floors_are_never_lowered() -> None:
    bounds = load_bounds("default")["min"]
    assert bounds["answer_str_em"] >= 0.85
    assert bounds["refusal_accuracy"] >= 0.80
    assert bounds["citation_precision"] >= 0.90


@pytest.mark.parametrize("section", ["default", "default-tune2", "default-test", "small"])
def test_every_gate_s_bounds_are_those_of_its_committed_measured_run(section: str) -> None:
    """A bound changes only with a re-measured run committed beside it: each gate's summary in
    eval/results/ records the bounds it was checked against, and its measured values meet them.
    Lowering a bound without running the gate again fails here."""
    bounds = load_bounds(section)
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))
            if p.name != "retrieval-sweep.json"]
    mine = [r for r in runs if r.get("gate") == section]
    assert len(mine) == 1, f"one committed run of [{section}] in eval/results/ (make eval)"
    run = mine[0]
    assert run["bounds"] == bounds, f"[{section}] changed since its run {run['commit']}"
    measured = {name: m["value"] for name, m in run["metrics"].items()}
    checks = evaluate(measured, bounds)
    assert checks and all(c.passed for c in checks), [c.describe() for c in checks]
