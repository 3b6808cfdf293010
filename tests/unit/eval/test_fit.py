"""The fitted decision and its replays, from committed files (no model).

* the default model's scorer records what it was fitted on (the article's tuning splits and the
  fit Debian documents), and refitting those reports (eval/results/fit/) gives it back;
* a committed eval report (eval/results/reports/), replayed through ``Policy.verdict`` — the
  function the service decides with — gives back every ``refused`` and ``refusal_reason``.
"""

import hashlib
import json
from pathlib import Path

import pytest

from eval import fit
from eval.decisions import load_report, replay
from rag.decision.scorers import FITTED_DIR, LogisticScorer, choice_for
from rag.settings import PROJECT_ROOT

PROJECT = PROJECT_ROOT
RESULTS = PROJECT / "eval" / "results"
DEFAULT = "qwen2.5-coder-1.5b-instruct-q4_k_m"


def test_the_default_model_decides_with_its_fitted_scorer() -> None:
    choice = choice_for(DEFAULT)
    assert isinstance(choice.scorer, LogisticScorer)
    assert choice.min_confidence == choice.scorer.fitted["min_confidence"]
    assert choice.scorer.fitted["generator"] == DEFAULT


def test_refitting_the_recorded_reports_reproduces_the_committed_scorer(tmp_path: Path) -> None:
    committed = LogisticScorer.load(FITTED_DIR / f"{DEFAULT}.json")
    reports = [RESULTS / "fit" / r["name"] for r in committed.fitted["reports"]]  # type: ignore[attr-defined]
    for report, recorded in zip(reports, committed.fitted["reports"], strict=True):  # type: ignore[call-overload]
        assert hashlib.sha256(report.read_bytes()).hexdigest() == recorded["sha256"], report
    out = tmp_path / "refit.json"
    fit.cmd_fit(reports, out)
    refit = json.loads(out.read_text())
    assert refit["weights"].keys() == committed.weights.keys()
    # scikit-learn's solver stops at a tolerance: another CPU may round the last digits apart.
    for name, weight in committed.weights.items():
        assert refit["weights"][name] == pytest.approx(weight, rel=1e-4, abs=1e-6), name
    assert refit["bias"] == pytest.approx(committed.bias, rel=1e-4, abs=1e-6)
    assert committed.calibration is not None
    assert refit["calibration"]["kind"] == committed.calibration["kind"]
    for key, value in committed.calibration.items():
        if key != "kind":
            assert refit["calibration"][key] == pytest.approx(value, abs=1e-4), key
    assert refit["fitted"]["min_confidence"] == pytest.approx(
        committed.fitted["min_confidence"], abs=1e-4)


# The gate runs made with the committed policy (the sealed runs and the small model's AVX-512
# run were made before it and are summarized by replay).
@pytest.mark.parametrize("name", ["article-tune-default", "article-tune-small-avx2"])
def test_a_committed_report_replays_to_the_same_verdicts(name: str) -> None:
    report = load_report(RESULTS / "reports" / f"{name}.json.gz")
    verdicts = replay(report.rows, report.policy)
    assert len(verdicts) == len(report.rows) > 50
    for row, verdict in zip(report.rows, verdicts, strict=True):
        assert (verdict.refused, verdict.reason) == (row.refused, row.refusal_reason), row.id
    assert any(row.refused for row in report.rows) and not all(r.refused for r in report.rows)


def test_the_operating_point_s_metrics_count_only_answers_given() -> None:
    def item(answerable: bool, p: float | None, right: bool, kind: str = "fact") -> fit.Scored:
        return fit.Scored(answerable, kind, p, right, right, True if answerable else None)

    items = [item(True, 0.9, True), item(True, 0.3, True), item(True, 0.8, False),
             item(False, 0.7, False, "tempting"), item(False, None, False, "absent")]
    at = fit.at_threshold(items, 0.5)
    assert at["answered_precision"]["count"] == [1, 3]  # the tempting one answered counts wrong
    assert at["answerable_coverage"]["count"] == [2, 3]
    assert at["accuracy"]["count"] == [2, 5]  # the right draft below the threshold is refused
    assert at["tempting_refused"]["count"] == [0, 1]
    assert at["absent_refused"]["count"] == [1, 1]
    # Precision 1/1 at 0.9, 1/2 at 0.8, 1/3 at 0.7, 2/4 at 0.3: the lowest reaching 0.5.
    assert fit.operating_point(items, target=0.5) == 0.3
    assert fit.operating_point(items, target=0.6) == 0.9
