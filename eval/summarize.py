"""Write a saved report's summary, checked against a gate, without asking the model again.

The report's answers are scored again by the current metrics (so a summary follows a change of
metric, such as the strict ``answer_strict``); the summary records the report's sha256 and the
commit the report was produced on, never the commit it was summarized on. With ``--replay`` the
report's recorded traces are decided again by the current policy (``Policy.verdict``, what the
service would decide on the same drafts) before they are scored:

    python -m eval.summarize reports/article-test-default.json --gate default-test \
        --out eval/results/article-test-default.json
    python -m eval.summarize reports/squad-Normans-default.json --replay \
        --out eval/results/squad-Normans-default.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eval import gate, metrics
from eval.decisions import as_run, load_rows, outcomes, read_report, replay, report_text
from eval.runner import report_sha256, summary
from rag.decision.scorers import choice_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.summarize", description=__doc__)
    parser.add_argument("report", type=Path)
    parser.add_argument("--gate", help="thresholds section to check against")
    parser.add_argument("--replay", action="store_true",
                        help="decide the recorded traces again with the current policy")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--commit", help="the commit the report was produced on, for a report "
                                         "older than the commit field (2026-12-06)")
    args = parser.parse_args(argv)
    result = read_report(args.report)
    result.setdefault("commit", args.commit or "unknown")
    result |= replayed(result) if args.replay else rescored(result)
    bounds = gate.load_bounds(args.gate) if args.gate else None
    checks = gate.evaluate({name: result.get(name) for name in metrics.METRIC_NAMES},
                           bounds) if bounds else []
    result["gate"] = [{"metric": c.metric, "passed": c.passed} for c in checks]
    written = summary(result, args.gate, bounds, report_sha256(report_text(args.report)))
    args.out.write_text(json.dumps(written, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    failed = [c.describe() for c in checks if not c.passed]
    print("; ".join(failed) or "every bound met", file=sys.stderr)
    return 1 if failed else 0


def rescored(result: dict[str, Any]) -> dict[str, Any]:
    """The report's metrics recomputed from its answers as they were given."""
    scored = as_run(load_rows(result))
    return {**metrics.compute(scored),
            "counts": {name: list(count) for name, count in metrics.counts(scored).items()}}


def replayed(result: dict[str, Any]) -> dict[str, Any]:
    """The report's metrics and policy had the current policy decided its recorded drafts."""
    choice = choice_for(result["model"])
    policy = choice.policy(result["policy"]["min_relevance"])
    rows = load_rows(result)
    scored = outcomes(rows, replay(rows, policy))
    return {
        **metrics.compute(scored),
        "counts": {name: list(count) for name, count in metrics.counts(scored).items()},
        "policy": {"scorer": policy.scorer.name, "min_relevance": policy.min_relevance,
                   "min_confidence": policy.min_confidence,
                   "replayed_from": result["policy"]},
    }


if __name__ == "__main__":
    sys.exit(main())
