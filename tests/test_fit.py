"""The fitted decision and its replays, from committed files (no model).

* the default model's scorer records what it was fitted on, and refitting those reports
  (eval/results/fit/) gives it back;
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

PROJECT = Path(__file__).resolve().parent.parent
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
    for name, weight in committed.weights.items():
        assert refit["weights"][name] == pytest.approx(weight, abs=1e-6), name
    assert refit["bias"] == pytest.approx(committed.bias, abs=1e-6)
    assert refit["fitted"]["min_confidence"] == pytest.approx(
        committed.fitted["min_confidence"], abs=1e-6)


@pytest.mark.parametrize("name", ["article-tune-default", "article-test-default"])
def test_a_committed_report_replays_to_the_same_verdicts(name: str) -> None:
    report = load_report(RESULTS / "reports" / f"{name}.json.gz")
    verdicts = replay(report.rows, report.policy)
    assert len(verdicts) == len(report.rows) > 50
    for row, verdict in zip(report.rows, verdicts, strict=True):
        assert (verdict.refused, verdict.reason) == (row.refused, row.refusal_reason), row.id
    assert any(row.refused for row in report.rows) and not all(r.refused for r in report.rows)
