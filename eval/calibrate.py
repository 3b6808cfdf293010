"""Fit the calibrated refusal model (``rag.calibration``) on tuning reports only.

Each drafted answer of the reports is one example: its features (the model's P(found), the
verifier's P(yes), the best citation support and passage similarity, the question's coverage by
the supporting sentences, the rule signals' flags)
and whether the draft was right (an answerable question, a gold answer in the draft). A
logistic regression with a little L2 is fitted by Newton's method; the threshold is the one that
makes the most questions of the tuning reports come out right (answered right or refused when
unanswerable). Drafts that a hard signal refuses anyway (no answer, no support) are left out.

    make calibrate    # fit on reports/article-tune-default.json, squad-Normans-default.json
    python -m eval.calibrate replay --model rag/refusal_model.json reports/article-test-default.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from eval import metrics
from eval.signals import draft_is_right
from rag.calibration import (
    FEATURES,
    FLAG_SIGNALS,
    MODEL_FILE,
    RefusalModel,
    features,
    load,
    question_coverage,
)

L2 = 1.0
HARD = ("model verdict", "no support")


def examples(report: dict[str, Any]) -> tuple[list[list[float]], list[bool], list[bool]]:
    """Features, draft-is-right labels and answerable flags of the decidable drafts."""
    xs, right, answerable = [], [], []
    for q in report["per_question"]:
        trace = q.get("trace") or {}
        signals = trace.get("signals") or {}
        if not trace.get("draft") or any(signals.get(h) for h in HARD):
            continue
        if "verification" not in trace:
            raise ValueError(f"{q['id']}: no verifier score: fit on a default-model report")
        row = _features(_asked(q), trace)
        xs.append([row[name] for name in FEATURES])
        right.append(draft_is_right(q))
        answerable.append(bool(q["answerable"]))
    return xs, right, answerable


def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method, L2 on the weights (not the bias)."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [L2] * x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = z.T @ (z * (p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hessian, gradient)
    weights = w[1:] / scale
    return weights, float(w[0] - (w[1:] * mean / scale).sum())


def best_threshold(p: np.ndarray, right: np.ndarray, answerable: np.ndarray) -> float:
    """The cut that gets the most decidable questions right (answered right, or refused when
    the question is unanswerable)."""
    def score(t: float) -> int:
        keep = p >= t
        return int((keep & right).sum() + (~keep & ~answerable).sum())
    candidates: list[float] = sorted({0.0, *p.tolist()})
    return float(max(candidates, key=lambda t: (score(t), -t)))


def replay(report: dict[str, Any], model: RefusalModel | None) -> dict[str, float | None]:
    """The report's metrics had ``model`` decided the refusals (None: the rule signals), from
    the signals and citations recorded for every draft; the drafts themselves are as run."""
    outcomes = []
    for q in report["per_question"]:
        trace = q.get("trace") or {}
        refused = _refused(_asked(q), trace, model)
        outcomes.append(metrics.QuestionOutcome(
            answerable=q["answerable"], golds=tuple(q["gold_answers"]),
            answer="" if refused else trace["draft"], refused=refused,
            citations=() if refused else _located(trace["support_citations"]),
            passages=_located(q["passage_spans"]), evidence=_located(q["evidence_spans"]),
            latency_s=q["latency_s"],
        ))
    return metrics.compute(outcomes)


def _refused(question: str, trace: dict[str, Any], model: RefusalModel | None) -> bool:
    signals = trace.get("signals") or {}
    if not trace.get("draft") or any(signals.get(h) for h in HARD):
        return True  # refused before drafting, no answer, or no support
    if model is None:
        return any(why for name, why in signals.items() if name != "calibrated")
    return model.p_right(_features(question, trace)) < model.threshold


def _asked(row: dict[str, Any]) -> str:
    """The question as retrieved and answered (a follow-up rewritten to stand alone)."""
    return str(row.get("standalone_question") or row["question"])


def _features(question: str, trace: dict[str, Any]) -> dict[str, float]:
    """A draft's features as the pipeline computes them, from what its trace recorded."""
    signals = trace.get("signals") or {}
    flags = {name: bool(signals.get(name)) for name in FLAG_SIGNALS.values()}
    return features(trace["found_probability"], trace.get("verification", 0.0),
                    trace["best_support"], trace["best_similarity"],
                    question_coverage(question, trace["evidence"]), flags)


def _located(spans: list[list[Any]]) -> tuple[metrics.Located, ...]:
    return tuple(metrics.Located(source, start, end) for source, start, end in spans)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.calibrate", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True)
    fitting = actions.add_parser("fit", help="fit on tuning reports, write the model")
    fitting.add_argument("reports", nargs="+", type=Path)
    fitting.add_argument("--out", type=Path, default=MODEL_FILE)
    replaying = actions.add_parser("replay", help="metrics of reports under another decision")
    replaying.add_argument("reports", nargs="+", type=Path)
    replaying.add_argument("--model", type=Path, help="a fitted model (default: the rules)")
    args = parser.parse_args()
    if args.action == "fit":
        fit_reports(args.reports, args.out)
        return
    model = load(args.model) if args.model else None
    for path in args.reports:
        values = replay(json.loads(path.read_text(encoding="utf-8")), model)
        shown = {k: round(v, 3) for k, v in values.items() if v is not None}
        print(json.dumps({"report": path.name, **shown}))


def fit_reports(paths: list[Path], out: Path) -> None:
    rows: list[list[float]] = []
    right: list[bool] = []
    answerable: list[bool] = []
    generators = set()
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        generators.add(report["model"])
        x_, r_, a_ = examples(report)
        rows += x_
        right += r_
        answerable += a_
    if len(generators) != 1:
        raise SystemExit(f"fit on one generator's reports (got {sorted(generators)})")
    x, y = np.array(rows), np.array(right, dtype=float)
    weights, bias = fit(x, y)
    p = 1 / (1 + np.exp(-(x @ weights + bias)))
    threshold = best_threshold(p, np.array(right), np.array(answerable))
    model = RefusalModel(
        weights={name: round(float(w), 6) for name, w in zip(FEATURES, weights, strict=True)},
        bias=round(bias, 6), threshold=round(threshold, 6),
        fitted_on=[p.name for p in paths], generator=generators.pop(),
    )
    model.save(out)
    print(f"{len(y)} drafts ({int(y.sum())} right); threshold {threshold:.3f}; wrote {out}")


if __name__ == "__main__":
    main()
