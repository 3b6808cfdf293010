"""Fit the decision's scorer on tuning reports, and measure it on documents left out.

Every drafted answer of the reports that the hard gates let through is one example: its features
(``rag.decision.features``) and whether the draft is right. A logistic regression with a little L2
(Newton's method on standardized features) gives P(right). Documents are kept apart: the
article's tuning splits are one document, each SQuAD article another.

    python -m eval.fit fit REPORT...      # fit on all; write rag/decision/fitted/<model>.json
    python -m eval.fit lodo REPORT...     # leave one document out: fit on the others, score it
    python -m eval.fit levers REPORT...   # each feature group's gain, fitted and left out
    python -m eval.fit curves --name N REPORT...  # the committed scorer's risk-coverage and
                                                  # reliability, per report (PNG and JSON)

The operating point (``min_confidence``) is chosen for answered precision within the project's
floors: the middle of the range of thresholds at which the article's tuning split still meets
``[default]`` in eval/thresholds.toml (answered right, unanswerable refused, citations on the
evidence), so the most precise default the floors allow, with a question of margin each way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from eval import gate, metrics
from eval.decisions import Row, load_rows, outcomes, read_report, replay
from eval.metrics import wilson
from eval.runner import commit
from rag.decision.features import FEATURES
from rag.decision.policy import GATES, Policy, Scorer
from rag.decision.scorers import FALLBACK, FITTED_DIR, LogisticScorer, choice_for
from rag.settings import PROJECT_ROOT, Settings

L2 = 1.0
GATE = "default"  # the floors the operating point must keep on the article's tuning split
GATE_GOLD = "eval/gold/article.jsonl"
# The gates that refuse whatever the scorer says: nothing to weigh before a supported draft.
HARD = tuple(g for g in GATES if g.name in {"retrieval", "model verdict", "no support"})
# Feature groups, in the order they were expected to pay (issue: fitted decision).
LEVERS: dict[str, tuple[str, ...]] = {
    "calibrated odds": ("odds_logit",),
    "combination": ("found_logit", "verification_logit", "best_support", "best_similarity",
                    "question_coverage"),
    "question PMI": ("pmi_mean", "pmi_min"),
    "name coverage": ("name_coverage",),
    "answer log-probability": ("answer_logprob",),
    "rule flags": ("answer_type_mismatch", "echo"),
}
RESULTS = PROJECT_ROOT / "eval" / "results"
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Document:
    name: str
    rows: list[Row]


def documents(paths: Sequence[Path]) -> list[Document]:
    """The reports' rows grouped by document (the article's splits are one document)."""
    grouped: dict[str, list[Row]] = {}
    for path in paths:
        data = read_report(path)
        name = "+".join(data["doc_filter"]) if data.get("doc_filter") else "article"
        grouped.setdefault(name, []).extend(load_rows(data))
    return [Document(name, rows) for name, rows in grouped.items()]


def eligible(row: Row, policy: Policy) -> bool:
    """A draft the scorer decides on: every gate of ``policy`` let it through."""
    if not row.trace.drafted or not row.trace.draft:
        return False
    return not any(policy.explain(row.trace).values())


def matrix(rows: list[Row], features: Sequence[str]) -> Array:
    return np.array([[FEATURES[f](row.trace) for f in features] for row in rows], dtype=float)


def fit(x: Array, y: Array, l2: float = L2) -> tuple[Array, float]:
    """Logistic regression by Newton's method, L2 on the standardized weights (not the bias);
    the weights returned apply to the raw features."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [l2] * x.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(z @ w, -30, 30)))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = z.T @ (z * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    weights = w[1:] / scale
    return weights, float(w[0] - (w[1:] * mean / scale).sum())


def scorer_for(rows: list[Row], features: Sequence[str], policy: Policy,
               fitted: dict[str, Any] | None = None) -> LogisticScorer:
    chosen = [r for r in rows if eligible(r, policy)]
    x = matrix(chosen, features)
    y = np.array([r.draft_right for r in chosen], dtype=float)
    weights, bias = fit(x, y)
    return LogisticScorer({f: round(float(w), 8) for f, w in zip(features, weights, strict=True)},
                          round(bias, 8), fitted or {})


# ---- scoring a decision -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One question under a scorer: its P(right) if it reached the scorer, and the truth."""

    answerable: bool
    adversarial: bool  # unanswerable (all SQuAD unanswerables are written to tempt)
    p: float | None  # None: refused by a hard gate
    right: bool  # the draft is right (answerable and it names a gold answer)
    retrieved: bool | None  # the evidence was among the passages (answerable questions)


def scored(rows: list[Row], scorer: Scorer, policy: Policy) -> list[Scored]:
    return [Scored(r.answerable, not r.answerable,
                   scorer.p_right(r.trace) if eligible(r, policy) else None, r.draft_right,
                   _retrieved(r) if r.answerable else None) for r in rows]


def _retrieved(row: Row) -> bool:
    return any(p.contains(e) for p in row.passages[:4] for e in row.evidence)


def at_threshold(items: list[Scored], t: float) -> dict[str, Any]:
    """The targets' metrics when drafts with P(right) >= t are answered."""
    answered = [s.p is not None and s.p >= t for s in items]
    right = sum(s.right for s, a in zip(items, answered, strict=True) if a)
    answerable = [s for s in items if s.answerable]
    covered = sum(s.answerable for s, a in zip(items, answered, strict=True) if a)
    adversarial = sum(s.adversarial for s in items)
    refused_adv = sum(s.adversarial for s, a in zip(items, answered, strict=True) if not a)
    retrieved = [s for s in answerable if s.retrieved is not None]
    return {
        "threshold": round(t, 4),
        "answered_precision": _rate(right, sum(answered)),
        "answerable_coverage": _rate(covered, len(answerable)),
        "adversarial_refused": _rate(refused_adv, adversarial),
        "accuracy": _rate(right + refused_adv, len(items)),
        "recall_at_4": _rate(sum(bool(s.retrieved) for s in retrieved), len(retrieved)),
    }


def _rate(k: int, n: int) -> dict[str, Any]:
    interval = wilson(k, n)
    return {"value": round(k / n, 4) if n else None, "count": [k, n],
            "interval": [round(v, 3) for v in interval] if interval else None}


def risk_coverage(items: list[Scored]) -> tuple[list[tuple[float, float, float]], float]:
    """(threshold, answerable coverage, answered precision) at every distinct confidence, and
    the area under precision against coverage (0 to the highest coverage reached)."""
    ps = sorted({s.p for s in items if s.p is not None}, reverse=True)
    answerable = sum(s.answerable for s in items) or 1
    curve = []
    for t in ps:
        answered = [s for s in items if s.p is not None and s.p >= t]
        curve.append((t, sum(s.answerable for s in answered) / answerable,
                      sum(s.right for s in answered) / len(answered)))
    area, last_x = 0.0, 0.0
    for _, x, y in curve:
        area += (x - last_x) * y
        last_x = x
    return curve, area


def ece(items: list[Scored], bins: int = 10) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error of P(right) over the drafts the scorer saw, and the bins."""
    seen = [s for s in items if s.p is not None]
    table, total = [], 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [s for s in seen if low <= s.p < high or (b == bins - 1 and s.p == 1.0)]  # type: ignore[operator]
        if not inside:
            continue
        confidence = sum(s.p for s in inside) / len(inside)  # type: ignore[misc]
        observed = sum(s.right for s in inside) / len(inside)
        total += len(inside) / len(seen) * abs(confidence - observed)
        table.append({"low": low, "high": high, "n": len(inside),
                      "confidence": round(confidence, 4), "observed": round(observed, 4)})
    return total, table


def operating_point(rows: list[Row], scorer: Scorer, policy: Policy) -> float | None:
    """The middle of the thresholds at which ``rows`` (the article's tuning split) meet the
    ``[default]`` floors; None when no threshold does."""
    bounds = gate.load_bounds(GATE)
    candidates = sorted({scorer.p_right(r.trace) for r in rows if eligible(r, policy)})
    passing = []
    for t in candidates:
        decided = replace(policy, scorer=scorer, min_confidence=t)
        values = metrics.compute(outcomes(rows, replay(rows, decided)))
        if all(check.passed for check in gate.evaluate(values, bounds)):
            passing.append(t)
    if not passing:
        return None
    low, high = passing[0], passing[-1]
    below = max((t for t in candidates if t < low), default=low)  # the passing range's edges
    above = min((t for t in candidates if t > high), default=high)
    return ((low + below) / 2 + (high + above) / 2) / 2


# ---- the commands -----------------------------------------------------------------------------


def baseline_policy() -> Policy:
    """The rule before any fit (the odds of P(found) and P(yes) at 0.9) with every gate; its
    gates decide which drafts a scorer weighs."""
    return Policy(FALLBACK.scorer, Settings().min_relevance, FALLBACK.min_confidence)


def lodo(docs: list[Document], features: Sequence[str], policy: Policy
         ) -> dict[str, list[Scored]]:
    """Each document scored by a scorer fitted on the others."""
    found = {}
    for held in docs:
        others = [r for d in docs if d is not held for r in d.rows]
        found[held.name] = scored(held.rows, scorer_for(others, features, policy), policy)
    return found


@dataclass(frozen=True)
class Plan:
    """The chosen features fitted on every document, with the operating point they allow."""

    docs: list[Document]
    model: str
    policy: Policy
    features: list[str]
    scorer: LogisticScorer
    threshold: float


def plan(paths: list[Path]) -> Plan:
    docs = documents(paths)
    model = _model(paths)
    policy = baseline_policy()
    features = [f for group in CHOSEN for f in LEVERS[group]]
    scorer = scorer_for([r for d in docs for r in d.rows], features, policy)
    threshold = operating_point(_gate_rows(paths), scorer, policy)
    if threshold is None:
        raise SystemExit(f"no operating point meets [{GATE}] on {GATE_GOLD}")
    return Plan(docs, model, policy, features, scorer, threshold)


# The levers the committed scorer uses (see cmd_levers and docs/evaluation.md: the others
# rank left-out documents a little better but no threshold of theirs keeps the article's floors).
CHOSEN = ["calibrated odds"]


def cmd_fit(paths: list[Path], out: Path | None) -> None:
    chosen = plan(paths)
    rows = [r for d in chosen.docs for r in d.rows]
    fitted = {
        "generator": chosen.model, "features": chosen.features, "l2": L2,
        "reports": [{"name": p.name, "sha256": _sha256(p)} for p in paths],
        "documents": {d.name: len(d.rows) for d in chosen.docs},
        "examples": sum(eligible(r, chosen.policy) for r in rows),
        "min_confidence": round(chosen.threshold, 6),
        "operating_point": f"the middle of the thresholds that keep [{GATE}] on {GATE_GOLD}",
    }
    path = out or FITTED_DIR / f"{chosen.model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    LogisticScorer(chosen.scorer.weights, chosen.scorer.bias, fitted).save(path)
    print(f"{fitted['examples']} drafts from {len(chosen.docs)} documents; operating point "
          f"{chosen.threshold:.4f}; wrote {path}")


def cmd_lodo(paths: list[Path]) -> dict[str, Any]:
    """Per document: the decision at the operating point, and its calibration when the scorer
    was fitted without that document."""
    chosen = plan(paths)
    held_out = lodo(chosen.docs, chosen.features, chosen.policy)
    result: dict[str, Any] = {"features": chosen.features, "operating_point": chosen.threshold,
                              "commit": commit(), "date": _today(), "documents": {}}
    for doc in chosen.docs:
        decided = scored(doc.rows, chosen.scorer, chosen.policy)
        held = held_out[doc.name]
        error, bins = ece(held)
        curve, area = risk_coverage(held)
        result["documents"][doc.name] = {
            "at_operating_point": at_threshold(decided, chosen.threshold),
            "ece_left_out": round(error, 4), "reliability_left_out": bins,
            "area_left_out": round(area, 4),
            "risk_coverage_left_out": [[round(t, 4), round(x, 4), round(y, 4)]
                                       for t, x, y in curve],
        }
        _plot(doc.name, curve, bins, RESULTS / f"lodo-{doc.name}")
    pooled = [s for items in held_out.values() for s in items]
    result["pooled_ece_left_out"] = round(ece(pooled)[0], 4)
    (RESULTS / "lodo.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for name, doc in result["documents"].items():
        point = doc["at_operating_point"]
        print(f"{name}: answered precision {_fmt(point['answered_precision'])} at answerable "
              f"coverage {_fmt(point['answerable_coverage'])}; adversarial refused "
              f"{_fmt(point['adversarial_refused'])}; recall@4 {_fmt(point['recall_at_4'])}; "
              f"left out: ECE {doc['ece_left_out']:.3f}, area {doc['area_left_out']:.3f}")
    return result


def cmd_levers(paths: list[Path]) -> list[dict[str, Any]]:
    """Each lever added in turn (on the structural gates), then the rule gates on top: the area
    under the risk-coverage curve fitted (in-sample) and on each document left out, and whether
    any threshold keeps the article's floors; beside the rule before (the odds at 0.9, every
    gate)."""
    docs = documents(paths)
    gate_rows = _gate_rows(paths)
    rule = baseline_policy()
    hard = replace(rule, gates=HARD)
    table = [_variant("odds rule (before)", docs, [], rule, gate_rows)]
    features: list[str] = []
    for group, added in LEVERS.items():
        features += added
        table.append(_variant(f"+ {group}", docs, features, hard, gate_rows))
    table.append(_variant("+ rule gates", docs, features, rule, gate_rows))
    table.append(_variant("calibrated odds, every gate", docs, ["odds_logit"], rule, gate_rows))
    for row in table:
        print(json.dumps(row))
    return table


def _variant(name: str, docs: list[Document], features: list[str], policy: Policy,
             gate_rows: list[Row]) -> dict[str, Any]:
    rows = [r for d in docs for r in d.rows]
    if not features:  # the rule itself: nothing fitted
        scorer: Scorer = policy.scorer
        held = {d.name: scored(d.rows, scorer, policy) for d in docs}
        threshold: float | None = policy.min_confidence
    else:
        scorer = scorer_for(rows, features, policy)
        held = lodo(docs, features, policy)
        threshold = operating_point(gate_rows, scorer, policy)
    in_sample = scored(rows, scorer, policy)
    return {
        "variant": name, "features": features, "area_fitted": round(risk_coverage(in_sample)[1], 4),
        "area_left_out": {n: round(risk_coverage(i)[1], 4) for n, i in held.items()},
        "ece_left_out": {n: round(ece(i)[0], 4) for n, i in held.items()},
        "keeps_article_floors_at": None if threshold is None else round(threshold, 4),
        "at_that_point": None if threshold is None else {
            d.name: _counts(scored(d.rows, scorer, policy), threshold) for d in docs},
    }


def _counts(items: list[Scored], t: float) -> dict[str, Any]:
    point = at_threshold(items, t)
    return {k: point[k]["count"] for k in ("accuracy", "answered_precision",
                                            "answerable_coverage", "adversarial_refused")}


def _gate_rows(paths: list[Path]) -> list[Row]:
    """The rows of the article's tuning split, where the operating point must keep the floors."""
    for path in paths:
        data = read_report(path)
        if Path(data["gold"]).as_posix().endswith(GATE_GOLD):
            return load_rows(data)
    raise SystemExit(f"the operating point is chosen on {GATE_GOLD}: give its report")


def cmd_curves(name: str, paths: list[Path]) -> None:
    """The committed scorer on each report, at its own operating point."""
    choice = choice_for(_model(paths))
    policy = Policy(choice.scorer, Settings().min_relevance, choice.min_confidence)
    out: dict[str, Any] = {"commit": commit(), "date": _today(), "reports": {}}
    for path in paths:
        items = scored(load_rows(read_report(path)), choice.scorer, policy)
        curve, area = risk_coverage(items)
        error, bins = ece(items)
        out["reports"][path.stem] = {
            "at_operating_point": at_threshold(items, choice.min_confidence),
            "ece": round(error, 4), "area": round(area, 4), "reliability": bins}
        _plot(path.stem, curve, bins, RESULTS / f"{path.stem}-curves")
    (RESULTS / f"{name}-curves.json").write_text(json.dumps(out, indent=1) + "\n",
                                                  encoding="utf-8")


def _plot(title: str, curve: list[tuple[float, float, float]],
          bins: list[dict[str, float]], stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.plot([x for _, x, _ in curve], [y for _, _, y in curve], marker=".")
    left.set(xlabel="answerable questions answered", ylabel="answered precision",
             title=f"{title}: risk-coverage", xlim=(0, 1), ylim=(0, 1.02))
    right.plot([0, 1], [0, 1], color="grey", linestyle=":")
    right.plot([b["confidence"] for b in bins], [b["observed"] for b in bins], marker="o")
    right.set(xlabel="P(right) predicted", ylabel="share right", title=f"{title}: reliability",
              xlim=(0, 1), ylim=(0, 1))
    figure.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(stem.with_suffix(".png"), dpi=80)
    plt.close(figure)


def _fmt(rate: dict[str, Any]) -> str:
    k, n = rate["count"]
    low, high = rate["interval"] or (0, 0)
    return f"{rate['value']} ({k}/{n}) [{low:.2f}, {high:.2f}]"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model(paths: Sequence[Path]) -> str:
    models = {str(read_report(p)["model"]) for p in paths}
    if len(models) != 1:
        raise SystemExit(f"reports of one generator only (got {sorted(models)})")
    return models.pop()


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.fit", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True)
    for action in ("fit", "lodo", "levers", "curves"):
        sub = actions.add_parser(action)
        sub.add_argument("reports", nargs="+", type=Path)
        if action == "fit":
            sub.add_argument("--out", type=Path)
        if action == "curves":
            sub.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    if args.action == "fit":
        cmd_fit(args.reports, args.out)
    elif args.action == "lodo":
        cmd_lodo(args.reports)
    elif args.action == "levers":
        cmd_levers(args.reports)
    else:
        cmd_curves(args.name, args.reports)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

