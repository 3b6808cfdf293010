"""The decision on synthetic traces (no model): every gate at its stage, the choice among
candidate answers, every scorer, the operating point, and the replay the eval relies on."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from rag.decision.features import (
    FEATURES,
    agreement,
    combined_confidence,
    name_coverage,
    overlap,
    pmi_mean,
    pmi_min,
    question_coverage,
)
from rag.decision.policy import (
    CANDIDATE_GATES,
    GATES,
    QUESTION_PMI,
    VERIFICATION,
    Policy,
    Verdict,
)
from rag.decision.scorers import (
    FoundScorer,
    LogisticScorer,
    OddsScorer,
    calibrated,
    choice_for,
)
from rag.errors import SettingsError
from rag.types import CandidateTrace, Trace

EVIDENCE = "Later in the day, Foreign Minister Toshimitsu Motegi told reporters in Nagoya."
NAGOYA = CandidateTrace(text="Nagoya", origin="greedy", logprob=-0.2, tokens=3,
                        evidence=EVIDENCE, best_support=0.9,
                        support_citations=[("a.txt", 10, 88)], verification=0.95)
ANSWERED = Trace(
    question="Where did Foreign Minister Motegi speak to reporters?", best_similarity=0.6,
    draft="Nagoya", found_probability=0.97, answer_logprob=-0.05, candidates=[NAGOYA],
    question_pmi=[0.5, 1.2, 0.1, 2.0],
)
ODDS = Policy(OddsScorer(), min_relevance=0.05, min_confidence=0.9)
STAGES = ("retrieved", "drafted", "measured")


def _stages(trace: Trace, policy: Policy = ODDS) -> list[Verdict]:
    return [policy.decide(trace, stage) for stage in STAGES]  # type: ignore[arg-type]


def _with(candidate: dict[str, object] | None = None, **trace: object) -> Trace:
    changed = replace(NAGOYA, **candidate or {})  # type: ignore[arg-type]
    return replace(ANSWERED, candidates=[changed], **trace)  # type: ignore[arg-type]


def test_a_supported_confident_draft_is_answered_with_its_confidence() -> None:
    retrieved, drafted, measured = _stages(ANSWERED)
    assert not retrieved.refused and not drafted.refused and not measured.refused
    assert retrieved.confidence is None and drafted.confidence is None
    assert measured.confidence == pytest.approx(combined_confidence(0.97, 0.95))
    assert measured.chosen == 0
    assert ODDS.verdict(ANSWERED) == measured


@pytest.mark.parametrize(
    ("trace", "stage", "reason"),
    [
        (_with(best_similarity=0.01), "retrieved", "retrieval: best passage similarity 0.01"),
        (_with(draft=""), "drafted", "model verdict: the model says"),
        (_with({"support_citations": []}), "drafted", "no support: no passage supports it"),
        (_with({"echoes_question": True}), "drafted", "echo: the answer only repeats"),
        (_with(question="What year did he speak?"), "drafted", "answer type: the question asks"),
        (_with({"verification": 0.2}), "measured", "confidence: P(right) 0.89 < 0.9"),
    ],
)
def test_each_gate_refuses_at_its_own_stage(trace: Trace, stage: str, reason: str) -> None:
    verdicts = dict(zip(STAGES, _stages(trace), strict=True))
    assert verdicts[stage].refused and verdicts[stage].reason.startswith(reason), verdicts
    earlier = STAGES[:STAGES.index(stage)]
    assert not any(verdicts[s].refused for s in earlier), "an earlier stage refused instead"
    assert ODDS.verdict(trace) == verdicts[stage]


def test_every_gate_is_tested_above() -> None:
    assert {g.name for g in GATES} | {g.name for g in CANDIDATE_GATES} == {
        "retrieval", "model verdict", "no support", "echo", "answer type"}


def test_the_candidate_rated_highest_that_no_gate_rules_out_is_chosen() -> None:
    sentence = replace(NAGOYA, text="Later in the day, Motegi told reporters in Nagoya",
                       verification=0.6)
    unsupported = replace(NAGOYA, text="Tokyo", origin="branch", support_citations=[],
                          verification=0.99)
    short = replace(NAGOYA, text="in Nagoya", origin="prefix", verification=0.97)
    trace = replace(ANSWERED, draft=sentence.text, candidates=[sentence, unsupported, short])
    assert ODDS.eligible(trace) == [0, 2]
    verdict = ODDS.verdict(trace)
    assert not verdict.refused and verdict.chosen == 2  # "Tokyo" rated higher, but unsupported
    assert verdict.confidence == pytest.approx(combined_confidence(0.97, 0.97))
    # When a gate rules every candidate out, the greedy answer's reason refuses.
    gated = replace(trace, candidates=[replace(c, support_citations=[])
                                       for c in trace.candidates])
    assert ODDS.verdict(gated).reason.startswith("no support")


def test_a_scorer_that_cannot_rank_candidates_decides_on_the_greedy_answer_alone() -> None:
    """P(found) is one number per question: had it chosen among candidates, a gate refusing
    the greedy answer would only hand the question to whichever other candidate it spared."""
    unsupported = replace(NAGOYA, support_citations=[])
    branch = replace(NAGOYA, text="Tokyo", origin="branch")
    found = Policy(FoundScorer(), min_relevance=0.05, min_confidence=0.0)
    gated = replace(ANSWERED, candidates=[unsupported, branch])
    assert found.eligible(gated) == [] and ODDS.eligible(gated) == [1]
    assert found.verdict(gated).reason.startswith("no support")
    assert not ODDS.verdict(gated).refused
    assert found.verdict(replace(ANSWERED, candidates=[NAGOYA, branch])).chosen == 0


def test_the_operating_point_is_the_request_s_own_when_given() -> None:
    confidence = combined_confidence(0.97, 0.95)
    strict = ODDS.with_min_confidence(0.999)
    assert strict.verdict(ANSWERED).refused
    assert strict.verdict(ANSWERED).confidence == pytest.approx(confidence)
    assert not ODDS.with_min_confidence(None).verdict(ANSWERED).refused
    lenient = _with({"verification": 0.1})
    assert ODDS.verdict(lenient).refused and not ODDS.with_min_confidence(0.0).verdict(
        lenient).refused


def test_replay_needs_a_trace_that_was_drafted_or_refused_at_retrieval() -> None:
    undrafted = Trace(question="q", best_similarity=0.6)
    with pytest.raises(ValueError, match="refused before drafting"):
        ODDS.verdict(undrafted)
    assert ODDS.verdict(replace(undrafted, best_similarity=0.0)).refused


def test_explain_reports_every_gate_alone_on_the_greedy_answer() -> None:
    explained = ODDS.explain(_with({"echoes_question": True, "support_citations": []}))
    assert set(explained) == {g.name for g in GATES} | {g.name for g in CANDIDATE_GATES}
    assert explained["echo"] and explained["no support"]
    assert explained["retrieval"] is None and explained["model verdict"] is None


def test_odds_combine_as_independent_evidence() -> None:
    assert combined_confidence(0.9, 0.9) == pytest.approx(81 / 82)
    assert combined_confidence(0.5, 0.7) == pytest.approx(0.7)
    assert combined_confidence(1.0, 0.0) == 0.0
    assert OddsScorer().measures == {VERIFICATION} and FoundScorer().measures == frozenset()
    assert FoundScorer().p_right(ANSWERED, NAGOYA) == 0.97


def test_each_generator_has_its_scorer_and_operating_point() -> None:
    assert choice_for("qwen2.5-coder-0.5b-instruct").min_confidence == 0.0
    assert 0.0 < choice_for("qwen2.5-coder-1.5b-instruct-q4_k_m").min_confidence < 1.0
    assert choice_for("some-other-model") == choice_for("another-one")


def test_features_read_the_trace_and_the_candidate() -> None:
    assert question_coverage(ANSWERED, NAGOYA) == 4 / 5  # all but "speak" ("told" in the text)
    swapped = replace(ANSWERED, question="Where did Defense Minister Kono speak to reporters?")
    assert name_coverage(ANSWERED, NAGOYA) == 1.0 and name_coverage(swapped, NAGOYA) < 1.0
    assert question_coverage(swapped, NAGOYA) < 1.0
    assert pmi_mean(ANSWERED, NAGOYA) == pytest.approx(0.95)
    assert pmi_min(ANSWERED, NAGOYA) == 0.1
    assert FEATURES["echo"](ANSWERED, replace(NAGOYA, echoes_question=True)) == 1.0
    assert FEATURES["odds_logit"](ANSWERED, NAGOYA) == pytest.approx(
        math.log(combined_confidence(0.97, 0.95) / (1 - combined_confidence(0.97, 0.95))))
    assert FEATURES["found_logit"](ANSWERED, NAGOYA) == pytest.approx(math.log(0.97 / 0.03))
    assert FEATURES["answer_logprob"](ANSWERED, NAGOYA) == pytest.approx(-0.2 / 3)
    assert FEATURES["computed"](ANSWERED, replace(NAGOYA, computed="24 - 6")) == 1.0
    with pytest.raises(ValueError, match="needs verification"):
        FEATURES["verification_logit"](ANSWERED, replace(NAGOYA, verification=None))


def test_agreement_is_the_share_of_probability_on_answers_that_say_the_same() -> None:
    assert overlap("the Foreign Minister Motegi", "Motegi") == pytest.approx(2 / 4)
    assert overlap("Nagoya", "Tokyo") == 0.0
    motegi = replace(NAGOYA, text="Toshimitsu Motegi", logprob=math.log(0.6))
    surname = replace(NAGOYA, text="Motegi", origin="prefix", logprob=math.log(0.2))
    other = replace(NAGOYA, text="Taro Kono", origin="branch", logprob=math.log(0.2))
    trace = replace(ANSWERED, candidates=[motegi, surname, other])
    assert agreement(trace, motegi) == pytest.approx(0.8)
    assert agreement(trace, other) == pytest.approx(0.2)
    assert FEATURES["logprob_gap"](trace, other) == pytest.approx(math.log(0.2 / 0.6))


def test_a_logistic_scorer_ranks_by_its_score_and_reports_the_calibrated_probability(
        tmp_path: Path) -> None:
    isotonic = {"kind": "isotonic", "x": [0.1, 0.5, 0.99], "y": [0.0, 0.5, 0.8]}
    scorer = LogisticScorer({"verification_logit": 1.5, "pmi_min": 0.5}, bias=-1.0,
                            calibration=isotonic, fitted={"reports": ["a.json"]})
    z = -1.0 + 1.5 * math.log(0.95 / 0.05) + 0.5 * 0.1
    raw = 1 / (1 + math.exp(-z))
    assert scorer.score(ANSWERED, NAGOYA) == pytest.approx(raw)
    assert scorer.p_right(ANSWERED, NAGOYA) == pytest.approx(
        0.5 + (raw - 0.5) / 0.49 * 0.3)  # linear between the fitted points
    assert scorer.measures == {VERIFICATION, QUESTION_PMI}
    assert LogisticScorer({"best_support": 1.0}, 0.0).measures == frozenset()
    path = tmp_path / "fitted.json"
    scorer.save(path)
    loaded = LogisticScorer.load(path)
    assert (loaded.weights, loaded.bias, loaded.calibration, loaded.fitted) == (
        scorer.weights, -1.0, isotonic, {"reports": ["a.json"]})
    policy = Policy(loaded, 0.05, 0.5)
    assert policy.verdict(ANSWERED).confidence == pytest.approx(
        scorer.p_right(ANSWERED, NAGOYA))
    assert policy.verdict(_with({"verification": 0.01})).refused
    path.write_text(json.dumps({"weights": {"shoe_size": 1.0}, "bias": 0.0}))
    with pytest.raises(SettingsError, match="unknown features"):
        LogisticScorer.load(path)


def test_calibrations_map_a_score_to_a_probability() -> None:
    platt = {"kind": "platt", "a": 2.0, "b": -1.0}
    assert calibrated(platt, 0.5) == pytest.approx(1 / (1 + math.exp(1.0)))
    isotonic = {"kind": "isotonic", "x": [0.2, 0.6], "y": [0.1, 0.7]}
    assert calibrated(isotonic, 0.0) == 0.1 and calibrated(isotonic, 1.0) == 0.7
    with pytest.raises(SettingsError, match="unknown calibration"):
        calibrated({"kind": "beta"}, 0.5)


def test_a_trace_recorded_before_candidates_replays_with_its_draft_as_the_one() -> None:
    old = {"question": "q", "best_similarity": 0.5, "draft": "Nagoya",
           "found_probability": 0.97, "answer_logprob": -0.1, "answer_tokens": 2,
           "evidence": EVIDENCE, "best_support": 0.9, "support_citations": [["a.txt", 1, 9]],
           "echoes_question": False, "verification": 0.9, "retired_field": 1}
    [candidate] = Trace.from_dict(old).candidates
    assert (candidate.text, candidate.origin, candidate.verification) == ("Nagoya", "greedy", 0.9)
    assert candidate.support_citations == [("a.txt", 1, 9)]
    assert candidate.logprob == pytest.approx(-0.2)
    assert Trace.from_dict(ANSWERED.to_dict()) == ANSWERED
