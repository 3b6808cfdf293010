"""Metrics on hand-made cases, with values worked out by hand; the gates' bounds."""

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from eval.floors import floors, runs_of, section_floors
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
    is_right,
    normalize_answer,
    percentile,
    wilson,
)
from eval.report import format_value, markdown, summary_table
from rag.errors import InputError
from rag.settings import PROJECT_ROOT

EVIDENCE = (Located("doc", 100, 150),)
RESULTS = PROJECT_ROOT / "eval" / "results"


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
        "answer_strict": (1, 3),
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
    assert m["answer_strict"] == 1.0
    assert m["answer_em"] == pytest.approx(1 / 2)
    assert m["accuracy"] == 1.0


def test_a_padded_answer_contains_the_gold_but_is_not_right() -> None:
    sentence = ("Later in the day, Foreign Minister Toshimitsu Motegi told reporters in Nagoya "
                "that the decision was made")
    m = compute([outcome(answer=sentence), outcome(answer="Foreign Minister Toshimitsu Motegi")])
    assert m["answer_str_em"] == 1.0
    assert m["answer_strict"] == pytest.approx(1 / 2)  # the copied sentence is not an answer
    assert m["accuracy"] == pytest.approx(1 / 2)


def test_strictly_right_is_judged_against_the_alternative_it_contains() -> None:
    assert is_right("deputy director", ["deputy director", "Blue House"])
    # F1 0.36 against "deputy director"; "national security office" is not in it at all.
    assert not is_right("deputy director of the presidential Blue House's security office",
                        ["deputy director", "national security office"])
    both = ("ballistic", "nuclear")
    assert is_right("nuclear and ballistic", [both])  # a list's parts, in any order
    assert is_right("ballistic missiles and nuclear programs", [both])  # F1 0.67
    assert not is_right("ballistic missiles", [both])  # half of the answer
    # Words compared both ways, as contains_answer compares them: "1910 45" is not padded.
    assert is_right("1910-45", ["1910"]) and not is_right("in 1910-45, under colonial rule",
                                                          ["1910"])
    assert is_right("20 years", ["20 years", "twenty years"])
    assert is_right("object.__gt__()", ["__gt__()"])  # a dotted name: words broken at dots


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
           "pass": {"answer_em": False, "answer_strict": True, "answer_str_em": True,
                    "refusal": True}}
    result = {name: 1.0 for name in METRIC_NAMES} | {
        "gold": "g.jsonl", "model": "m", "prompt": "p", "n": 1, "created_at": "now",
        "duration_s": 1.0, "counts": {"answer_str_em": [1, 1]}, "per_question": [row],
    }
    text = markdown(result, [])
    assert "| answer_str_em | 1.000 (1/1) [0.21, 1.00] |" in text
    assert "## Failures (0)" in text
    assert "- missed, though right by answer_strict: answer_em" in text
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


def _summaries() -> list[tuple[Path, dict[str, object]]]:
    skip = {"retrieval-sweep.json", "lodo.json", "levers.json", "documents.json", "probe.json"}
    return [(p, json.loads(p.read_text())) for p in sorted(RESULTS.glob("*.json"))
            if p.name not in skip and not p.name.endswith("-curves.json")]


@pytest.mark.parametrize("section", ["default", "small", "default-test", "default-tune2"])
def test_a_gate_s_bounds_are_computed_from_its_committed_runs(section: str) -> None:
    """Floors are MARGIN questions below the worst of the runs (one per CPU build) the section
    lists; changing a bound without committing a new run fails here."""
    runs = runs_of(section)
    assert runs, f"[{section}] lists the runs its bounds come from"
    assert all(run.is_file() for run in runs), runs
    assert section_floors(section) == load_bounds(section)


def test_floors_leave_their_margin_below_the_worst_run(tmp_path: Path) -> None:
    def report(name: str, answers: list[str]) -> Path:
        rows = [{"id": f"q{i}", "answerable": True, "gold_answers": ["Motegi"], "answer": a,
                 "refused": False, "refusal_reason": "", "citations": [],
                 "trace": {"question": "q", "best_similarity": 0.5},
                 "passage_spans": [], "evidence_spans": [], "latency_s": 1.0, "kind": "fact"}
                for i, a in enumerate(answers)]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"gold": "none", "per_question": rows}))
        return path

    avx512 = report("avx512", ["Motegi"] * 9 + ["Kono"])
    avx2 = report("avx2", ["Motegi"] * 8 + ["Kono"] * 2)
    bounds = floors([avx512, avx2], {"min": ["answer_strict"], "max": ["false_refusal_rate"]})
    assert bounds == {"min": {"answer_strict": 0.6}, "max": {"false_refusal_rate": 0.2}}


def test_a_summary_names_the_report_it_was_written_from() -> None:
    """Each committed summary records the sha256 of its report's text and the commit the
    report was produced on; the report is committed beside it (eval/results/reports/)."""
    for path, summary in _summaries():
        report = RESULTS / "reports" / f"{path.stem}.json.gz"
        assert report.is_file(), f"{path.name}: no report {report.name}"
        text = gzip.decompress(report.read_bytes())
        assert hashlib.sha256(text).hexdigest() == summary["report_sha256"], path.name
        assert summary["commit"] == json.loads(text).get("commit", summary["commit"]), path.name
