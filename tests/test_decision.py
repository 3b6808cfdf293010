"""The decision on synthetic traces (no model): every gate at its stage, every scorer, the
operating point, and the replay the eval relies on."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from rag.decision.features import (
    FEATURES,
    combined_confidence,
    name_coverage,
    pmi_mean,
    pmi_min,
    question_coverage,
)
from rag.decision.policy import GATES, QUESTION_PMI, VERIFICATION, Policy, Verdict
from rag.decision.scorers import FoundScorer, LogisticScorer, OddsScorer, choice_for
from rag.errors import SettingsError
from rag.types import Trace

EVIDENCE = "Later in the day, Foreign Minister Toshimitsu Motegi told reporters in Nagoya."
ANSWERED = Trace(
    question="Where did Foreign Minister Motegi speak to reporters?", best_similarity=0.6,
    draft="Nagoya", found_probability=0.97, answer_logprob=-0.05, evidence=EVIDENCE,
    best_support=0.9, support_citations=[("a.txt", 10, 88)], verification=0.95,
    question_pmi=[0.5, 1.2, 0.1, 2.0],
)
ODDS = Policy(OddsScorer(), min_relevance=0.05, min_confidence=0.9)


def _stages(trace: Trace, policy: Policy = ODDS) -> list[Verdict]:
    return [policy.decide(trace, stage) for stage in ("retrieved", "drafted", "measured")]


def test_a_supported_confident_draft_is_answered_with_its_confidence() -> None:
    retrieved, drafted, measured = _stages(ANSWERED)
    assert not retrieved.refused and not drafted.refused and not measured.refused
    assert retrieved.confidence is None and drafted.confidence is None
    assert measured.confidence == pytest.approx(combined_confidence(0.97, 0.95))
    assert ODDS.verdict(ANSWERED) == measured


@pytest.mark.parametrize(
    ("change", "stage", "reason"),
    [
        ({"best_similarity": 0.01}, "retrieved", "retrieval: best passage similarity 0.01"),
        ({"draft": ""}, "drafted", "model verdict: the model says"),
        ({"support_citations": []}, "drafted", "no support: no passage supports it"),
        ({"echoes_question": True}, "drafted", "echo: the answer only repeats"),
        ({"question": "What year did he speak?"}, "drafted", "answer type: the question asks"),
        ({"verification": 0.2}, "measured", "confidence: P(right) 0.89 < 0.9"),
    ],
)
def test_each_gate_refuses_at_its_own_stage(change: dict[str, object], stage: str,
                                            reason: str) -> None:
    trace = replace(ANSWERED, **change)  # type: ignore[arg-type]
    verdicts = dict(zip(("retrieved", "drafted", "measured"), _stages(trace), strict=True))
    assert verdicts[stage].refused and verdicts[stage].reason.startswith(reason), verdicts
    earlier = ("retrieved", "drafted", "measured")[:("retrieved", "drafted", "measured")
                                                     .index(stage)]
    assert not any(verdicts[s].refused for s in earlier), "an earlier stage refused instead"
    assert ODDS.verdict(trace) == verdicts[stage]


def test_every_gate_is_tested_above() -> None:
    assert {g.name for g in GATES} == {"retrieval", "model verdict", "no support", "echo",
                                       "answer type"}


def test_the_operating_point_is_the_request_s_own_when_given() -> None:
    confidence = combined_confidence(0.97, 0.95)
    strict = ODDS.with_min_confidence(0.999)
    assert strict.verdict(ANSWERED).refused
    assert strict.verdict(ANSWERED).confidence == pytest.approx(confidence)
    assert not ODDS.with_min_confidence(None).verdict(ANSWERED).refused
    lenient = replace(ANSWERED, verification=0.1)
    assert ODDS.verdict(lenient).refused and not ODDS.with_min_confidence(0.0).verdict(
        lenient).refused


def test_replay_needs_a_trace_that_was_drafted_or_refused_at_retrieval() -> None:
    undrafted = Trace(question="q", best_similarity=0.6)
    with pytest.raises(ValueError, match="refused before drafting"):
        ODDS.verdict(undrafted)
    assert ODDS.verdict(replace(undrafted, best_similarity=0.0)).refused


def test_explain_reports_every_gate_alone() -> None:
    explained = ODDS.explain(replace(ANSWERED, echoes_question=True, support_citations=[]))
    assert set(explained) == {g.name for g in GATES}
    assert explained["echo"] and explained["no support"]
    assert explained["retrieval"] is None and explained["model verdict"] is None


def test_odds_combine_as_independent_evidence() -> None:
    assert combined_confidence(0.9, 0.9) == pytest.approx(81 / 82)
    assert combined_confidence(0.5, 0.7) == pytest.approx(0.7)
    assert combined_confidence(1.0, 0.0) == 0.0
    assert OddsScorer().measures == {VERIFICATION} and FoundScorer().measures == frozenset()
    assert FoundScorer().p_right(ANSWERED) == 0.97


def test_each_generator_has_its_scorer_and_operating_point() -> None:
    assert choice_for("qwen2.5-coder-0.5b-instruct").min_confidence == 0.0
    assert 0.0 < choice_for("qwen2.5-coder-1.5b-instruct-q4_k_m").min_confidence < 1.0
    assert choice_for("some-other-model") == choice_for("another-one")


def test_features_read_the_trace() -> None:
    assert question_coverage(ANSWERED) == 4 / 5  # all but "speak" ("told" in the text)
    swapped = replace(ANSWERED, question="Where did Defense Minister Kono speak to reporters?")
    assert name_coverage(ANSWERED) == 1.0 and name_coverage(swapped) < 1.0
    assert question_coverage(swapped) < 1.0
    assert pmi_mean(ANSWERED) == pytest.approx(0.95) and pmi_min(ANSWERED) == 0.1
    assert FEATURES["echo"](replace(ANSWERED, echoes_question=True)) == 1.0
    assert FEATURES["odds_logit"](ANSWERED) == pytest.approx(
        math.log(combined_confidence(0.97, 0.95) / (1 - combined_confidence(0.97, 0.95))))
    assert FEATURES["found_logit"](ANSWERED) == pytest.approx(math.log(0.97 / 0.03))
    with pytest.raises(ValueError, match="needs verification"):
        FEATURES["verification_logit"](replace(ANSWERED, verification=None))


def test_a_logistic_scorer_weighs_its_features(tmp_path: Path) -> None:
    scorer = LogisticScorer({"verification_logit": 1.5, "pmi_min": 0.5}, bias=-1.0,
                            fitted={"reports": ["a.json"]})
    z = -1.0 + 1.5 * math.log(0.95 / 0.05) + 0.5 * 0.1
    assert scorer.p_right(ANSWERED) == pytest.approx(1 / (1 + math.exp(-z)))
    assert scorer.measures == {VERIFICATION, QUESTION_PMI}
    assert LogisticScorer({"best_support": 1.0}, 0.0).measures == frozenset()
    path = tmp_path / "fitted.json"
    scorer.save(path)
    loaded = LogisticScorer.load(path)
    assert (loaded.weights, loaded.bias, loaded.fitted) == (scorer.weights, -1.0,
                                                           {"reports": ["a.json"]})
    policy = Policy(loaded, 0.05, 0.5)
    assert policy.verdict(ANSWERED).confidence == pytest.approx(scorer.p_right(ANSWERED))
    assert policy.verdict(replace(ANSWERED, verification=0.01)).refused
    path.write_text(json.dumps({"weights": {"shoe_size": 1.0}, "bias": 0.0}))
    with pytest.raises(SettingsError, match="unknown features"):
        LogisticScorer.load(path)
