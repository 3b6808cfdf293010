"""Fit the decision's scorer on tuning reports, and measure it on documents left out.

Every candidate answer of a report's drafts that the gates let through is one example: its
features (``rag.decision.features``) and whether it is strictly right (``answer_strict``). A
logistic regression (scikit-learn) gives each candidate a score; the decision chooses the
candidate with the highest score and turns its score into P(right) with a calibration fitted on
**out-of-fold** scores: each document's scores come from a scorer fitted without it. Documents
are kept apart throughout: the article's tuning splits are one document, each SQuAD article and
each Debian document another.

    python -m eval.fit fit REPORT...      # fit on all; write rag/decision/fitted/<model>.json
    python -m eval.fit lodo REPORT...     # each document left out: the decision, its calibration
    python -m eval.fit levers REPORT...   # each lever's effect on the documents left out
    python -m eval.fit curves --name N REPORT...  # the committed scorer's risk-coverage and
                                                  # reliability, per report (PNG and JSON)

"Left out" numbers are nested: the scorer is fitted without the document, and so is the
calibration of its scores (fitted on the out-of-fold scores of the other documents, each from a
scorer fitted without that document and without the one left out). The operating point
(``min_confidence``) is chosen on the fit documents only: the lowest P(right) at which their
pooled left-out answers reach ``TARGET_PRECISION``.
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
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from eval.decisions import Row, load_rows, read_report
from eval.metrics import wilson
from eval.runner import commit
from rag.decision.features import FEATURES, logit
from rag.decision.policy import CANDIDATE_GATES, Policy, Scorer
from rag.decision.scorers import FITTED_DIR, LogisticScorer, calibrated, choice_for
from rag.decision.scorers import Choice as ScorerChoice
from rag.settings import PROJECT_ROOT, Settings
from rag.types import Trace

C = 1.0  # inverse L2 strength of the logistic regression, on standardized features
TARGET_PRECISION = 0.85  # the operating point: answered precision on the fit documents
Candidates = Literal["greedy", "all"]
Calibration = Literal["isotonic", "platt"]
# Feature groups, in the order they were expected to pay.
LEVERS: dict[str, tuple[str, ...]] = {
    "odds": ("odds_logit",),
    "model probability": ("answer_logprob", "logprob_gap", "words", "from_prefix",
                          "from_branch"),
    "agreement": ("agreement", "greedy_overlap"),
    "support": ("best_support", "question_coverage", "best_similarity", "name_coverage",
                "computed"),
    "question PMI": ("pmi_mean", "pmi_min"),
}
# The rule gates as features instead: the scorer weighs them (LEVERS, then this).
RULE_FLAGS = ("echo", "answer_type_mismatch")
RESULTS = PROJECT_ROOT / "eval" / "results"
Array = npt.NDArray[np.float64]


ALL_GATES = tuple(g.name for g in CANDIDATE_GATES)


@dataclass(frozen=True)
class Variant:
    """A decision to fit: which features, among which candidates, behind which candidate gates,
    calibrated how."""

    name: str
    features: tuple[str, ...]
    candidates: Candidates = "all"
    calibration: Calibration = "isotonic"
    gates: tuple[str, ...] = ALL_GATES

    def behind(self, policy: Policy) -> Policy:
        """``policy`` with this variant's candidate gates only."""
        return replace(policy, candidate_gates=tuple(g for g in CANDIDATE_GATES
                                                     if g.name in self.gates))


# The levers the committed scorer uses, chosen on the fit documents left out one at a time
# (cmd_levers, 2026-12-06; docs/evaluation.md): the candidates with the odds, the model's
# probabilities and the candidates' agreement, behind every rule gate (pooled left-out area 0.812,
# ECE 0.043). Adding support and question PMI gave +0.000; every group with the rule gates as
# features +0.010, and with Platt scaling +0.019 (ECE 0.025) at the same coverage at the operating
# point, for twice the features and a read of the question per answer (question PMI).
CHOSEN = Variant("chosen", LEVERS["odds"] + LEVERS["model probability"] + LEVERS["agreement"])


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


def baseline_policy() -> Policy:
    """The gates every scorer is fitted behind (the scorer itself is replaced)."""
    return Policy(choice_for("").scorer, Settings().min_relevance, 0.0)


# ---- fitting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A logistic regression on raw features (scales folded into the weights)."""

    features: tuple[str, ...]
    weights: Array
    bias: float

    def scores(self, trace: Trace, indices: list[int]) -> list[float]:
        z = self.bias + np.array([[FEATURES[f](trace, trace.candidates[i])
                                   for f in self.features] for i in indices]) @ self.weights
        return list(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))))


def choices(row: Row, variant: Variant, policy: Policy) -> list[int]:
    """The candidates of ``row`` the decision chooses among: those every gate lets through
    (of the greedy answer alone, for a greedy variant); [] when a gate refuses the question."""
    trace = row.trace
    if not trace.drafted or any(gate.fires(trace, policy) for gate in policy.gates):
        return []
    eligible = variant.behind(policy).eligible(trace)
    return [i for i in eligible if i == 0] if variant.candidates == "greedy" else eligible


def fit(rows: list[Row], variant: Variant, policy: Policy) -> Fitted:
    x, y = [], []
    for row in rows:
        for i in choices(row, variant, policy):
            x.append([FEATURES[f](row.trace, row.trace.candidates[i]) for f in variant.features])
            y.append(row.candidate_right(i))
    scaler = StandardScaler().fit(np.array(x))
    model = LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(np.array(x)), y)
    coef = model.coef_[0]
    weights = coef / scaler.scale_
    bias = float(model.intercept_[0] - (coef * scaler.mean_ / scaler.scale_).sum())
    return Fitted(variant.features, weights, bias)


@dataclass(frozen=True)
class Choice:
    """A question under a fitted decision: the candidate chosen and its raw score."""

    row: Row
    chosen: int | None  # None: refused by a gate
    raw: float | None

    @property
    def right(self) -> bool:
        return self.chosen is not None and self.row.candidate_right(self.chosen)


def decide(rows: list[Row], fitted: Fitted, variant: Variant, policy: Policy) -> list[Choice]:
    found = []
    for row in rows:
        indices = choices(row, variant, policy)
        if not indices:
            found.append(Choice(row, None, None))
            continue
        scores = fitted.scores(row.trace, indices)
        best = int(np.argmax(scores))
        found.append(Choice(row, indices[best], scores[best]))
    return found


def fit_calibration(choices_: list[Choice], kind: Calibration) -> dict[str, Any]:
    """A map from raw score to P(right), fitted on out-of-fold choices."""
    raw = np.array([c.raw for c in choices_ if c.raw is not None])
    right = np.array([c.right for c in choices_ if c.raw is not None], dtype=float)
    if kind == "platt":
        model = LogisticRegression(C=1e6, max_iter=1000).fit(
            np.array([[logit(r)] for r in raw]), right)
        return {"kind": "platt", "a": round(float(model.coef_[0][0]), 6),
                "b": round(float(model.intercept_[0]), 6)}
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, right)
    return {"kind": "isotonic", "x": [round(float(v), 6) for v in iso.X_thresholds_],
            "y": [round(float(v), 6) for v in iso.y_thresholds_]}


# ---- left out -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One question under a decision: the calibrated P(right) of its chosen candidate."""

    answerable: bool
    kind: str | None  # "tempting", "absent" (unanswerable), "fact", "computed"; None: unknown
    p: float | None  # None: refused by a gate
    right: bool  # the chosen candidate is strictly right
    draft_right: bool  # the model's greedy draft is strictly right
    retrieved: bool | None  # the evidence was among the passages (answerable questions)

    @property
    def tempting(self) -> bool:
        """Unanswerable and written to tempt (SQuAD's and the article's tuning splits' are)."""
        return not self.answerable and self.kind in (None, "tempting")


def scored(choices_: list[Choice], calibration: dict[str, Any]) -> list[Scored]:
    return [Scored(c.row.answerable, c.row.kind,
                   None if c.raw is None else calibrated(calibration, c.raw), c.right,
                   c.row.draft_right, _retrieved(c.row) if c.row.answerable else None)
            for c in choices_]


def _retrieved(row: Row) -> bool:
    return any(p.contains(e) for p in row.passages[:4] for e in row.evidence)


def left_out(docs: list[Document], variant: Variant, policy: Policy) -> dict[str, list[Scored]]:
    """Each document decided by a scorer fitted without it, calibrated on the out-of-fold
    scores of the others (each scored by a scorer fitted without it and the one left out)."""
    found = {}
    for held in docs:
        others = [d for d in docs if d is not held]
        fitted = fit(_rows(others), variant, policy)
        oof = [c for d in others for c in decide(
            d.rows, fit(_rows([o for o in others if o is not d]), variant, policy), variant,
            policy)]
        calibration = fit_calibration(oof, variant.calibration)
        found[held.name] = scored(decide(held.rows, fitted, variant, policy), calibration)
    return found


def out_of_fold(docs: list[Document], variant: Variant, policy: Policy) -> list[Choice]:
    """Every document's choices by a scorer fitted without it (what the final calibration is
    fitted on)."""
    return [c for held in docs for c in decide(
        held.rows, fit(_rows([d for d in docs if d is not held]), variant, policy), variant,
        policy)]


def _rows(docs: list[Document]) -> list[Row]:
    return [r for d in docs for r in d.rows]


def operating_point(items: list[Scored], target: float = TARGET_PRECISION) -> float:
    """The lowest threshold at which answered precision over ``items`` reaches ``target``
    (the most answers at that precision); the highest score when none does."""
    ps = sorted({s.p for s in items if s.p is not None}, reverse=True)
    best = ps[0] if ps else 1.0
    right = answered = 0
    by_p: dict[float, list[Scored]] = {}
    for s in items:
        if s.p is not None:
            by_p.setdefault(s.p, []).append(s)
    for p in ps:
        answered += len(by_p[p])
        right += sum(s.right for s in by_p[p])
        if right / answered >= target:
            best = p
    return best


def at_threshold(items: list[Scored], t: float) -> dict[str, Any]:
    """The targets' metrics when chosen answers with P(right) >= t are given."""
    answered = [s.p is not None and s.p >= t for s in items]
    pairs = list(zip(items, answered, strict=True))
    answerable = [s for s in items if s.answerable]
    return {
        "threshold": round(t, 4),
        "drafts_right": _rate(sum(s.right for s in answerable), len(answerable)),
        "greedy_right": _rate(sum(s.draft_right for s in answerable), len(answerable)),
        "answered_precision": _rate(sum(s.right for s, a in pairs if a), sum(answered)),
        "answerable_coverage": _rate(sum(s.answerable for s, a in pairs if a), len(answerable)),
        "tempting_refused": _rate(sum(s.tempting for s, a in pairs if not a),
                                  sum(s.tempting for s in items)),
        "absent_refused": _rate(sum(s.kind == "absent" for s, a in pairs if not a),
                                sum(s.kind == "absent" for s in items)),
        "accuracy": _rate(sum(s.right and a if s.answerable else not a for s, a in pairs),
                          len(items)),
        "recall_at_4": _rate(sum(bool(s.retrieved) for s in answerable), len(answerable)),
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
    """Expected calibration error of P(right) over the questions that reached the scorer, and
    the bins."""
    seen = [(s.p, s.right) for s in items if s.p is not None]
    table, total = [], 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(p, r) for p, r in seen if low <= p < high or (b == bins - 1 and p == 1.0)]
        if not inside:
            continue
        confidence = sum(p for p, _ in inside) / len(inside)
        observed = sum(r for _, r in inside) / len(inside)
        total += len(inside) / len(seen) * abs(confidence - observed)
        table.append({"low": low, "high": high, "n": len(inside),
                      "confidence": round(confidence, 4), "observed": round(observed, 4)})
    return total, table


# ---- the commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A variant fitted on every fit document, calibrated out of fold, with its operating
    point and every document's left-out decisions."""

    docs: list[Document]
    model: str
    variant: Variant
    fitted: Fitted
    calibration: dict[str, Any]
    held_out: dict[str, list[Scored]]
    threshold: float


def plan(paths: list[Path], variant: Variant = CHOSEN) -> Plan:
    docs = documents(paths)
    policy = baseline_policy()
    held = left_out(docs, variant, policy)
    threshold = operating_point([s for items in held.values() for s in items])
    return Plan(docs, _model(paths), variant, fit(_rows(docs), variant, policy),
                fit_calibration(out_of_fold(docs, variant, policy), variant.calibration),
                held, threshold)


def cmd_fit(paths: list[Path], out: Path | None) -> None:
    chosen = plan(paths)
    fitted = {
        "generator": chosen.model, "features": list(chosen.variant.features),
        "candidates": chosen.variant.candidates, "candidate_gates": list(chosen.variant.gates),
        "calibration": chosen.variant.calibration, "C": C,
        "reports": [{"name": p.name, "sha256": _sha256(p)} for p in paths],
        "documents": {d.name: len(d.rows) for d in chosen.docs},
        "min_confidence": round(chosen.threshold, 6),
        "operating_point": f"the lowest P(right) at which the fit documents' left-out answers "
                           f"reach answered precision {TARGET_PRECISION}",
    }
    weights = {f: round(float(w), 8) for f, w in zip(chosen.fitted.features,
                                                     chosen.fitted.weights, strict=True)}
    path = out or FITTED_DIR / f"{chosen.model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    LogisticScorer(weights, round(chosen.fitted.bias, 8), chosen.calibration, fitted).save(path)
    print(f"{len(chosen.docs)} documents; operating point {chosen.threshold:.4f}; wrote {path}")


def cmd_lodo(paths: list[Path]) -> dict[str, Any]:
    """Per document, left out: the decision at the operating point and its calibration."""
    chosen = plan(paths)
    result: dict[str, Any] = {"features": list(chosen.variant.features),
                              "operating_point": chosen.threshold, "commit": commit(),
                              "date": _today(), "documents": {}}
    for name, items in chosen.held_out.items():
        error, bins = ece(items)
        curve, area = risk_coverage(items)
        result["documents"][name] = {
            "at_operating_point": at_threshold(items, chosen.threshold),
            "ece_left_out": round(error, 4), "reliability_left_out": bins,
            "area_left_out": round(area, 4),
            "risk_coverage_left_out": [[round(t, 4), round(x, 4), round(y, 4)]
                                       for t, x, y in curve],
        }
        plot(name, curve, bins, RESULTS / f"lodo-{name}")
    pooled = [s for items in chosen.held_out.values() for s in items]
    result["pooled"] = {"at_operating_point": at_threshold(pooled, chosen.threshold),
                        "ece_left_out": round(ece(pooled)[0], 4)}
    (RESULTS / "lodo.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for name, doc in [*result["documents"].items(), ("pooled", result["pooled"])]:
        point = doc["at_operating_point"]
        print(f"{name}: drafts right {fmt(point['drafts_right'])}; answered precision "
              f"{fmt(point['answered_precision'])} at coverage "
              f"{fmt(point['answerable_coverage'])}; tempting refused "
              f"{fmt(point['tempting_refused'])}; ECE {doc['ece_left_out']:.3f}")
    return result


def variants() -> list[Variant]:
    """The levers in turn: the greedy answer with the odds (the decision before candidates),
    then candidates, then each feature group added, then the other calibration."""
    found = [Variant("greedy answer, odds", LEVERS["odds"], "greedy")]
    features: tuple[str, ...] = ()
    for group, added in LEVERS.items():
        features += added
        found.append(Variant(f"candidates, + {group}", features))
    found.append(Variant("candidates, every group, rule gates as features",
                         features + RULE_FLAGS, gates=("no support",)))
    found.append(replace(found[-1], name=found[-1].name + ", Platt", calibration="platt"))
    return found


def cmd_levers(paths: list[Path]) -> list[dict[str, Any]]:
    """Each variant left out, per document and pooled: drafts right, the area under the
    risk-coverage curve, ECE, and the metrics at the operating point chosen on the others."""
    docs = documents(paths)
    policy = baseline_policy()
    table = []
    for variant in variants():
        held = left_out(docs, variant, policy)
        pooled = [s for items in held.values() for s in items]
        threshold = operating_point(pooled)
        row: dict[str, Any] = {"variant": variant.name, "features": list(variant.features),
               "threshold": round(threshold, 4),
               "pooled": _summary(pooled, threshold),
               "documents": {n: _summary(i, threshold) for n, i in held.items()}}
        print(json.dumps({"variant": variant.name, **row["pooled"]}))
        table.append(row)
    out = {"commit": commit(), "date": _today(), "documents": [d.name for d in docs],
           "variants": table}
    (RESULTS / "levers.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return table


def _summary(items: list[Scored], t: float) -> dict[str, Any]:
    point = at_threshold(items, t)
    return {"drafts_right": point["drafts_right"]["count"],
            "greedy_right": point["greedy_right"]["count"],
            "answered_precision": point["answered_precision"]["count"],
            "coverage": point["answerable_coverage"]["count"],
            "tempting_refused": point["tempting_refused"]["count"],
            "area": round(risk_coverage(items)[1], 4), "ece": round(ece(items)[0], 4)}


def earlier_choice(scorer_path: Path) -> ScorerChoice:
    """An earlier commit's saved scorer at its own operating point (it decides the greedy
    draft alone, as that commit did)."""
    loaded = LogisticScorer.load(scorer_path)
    return ScorerChoice(loaded, float(loaded.fitted["min_confidence"]))  # type: ignore[arg-type]


def cmd_curves(name: str, paths: list[Path], scorer_path: Path | None = None) -> None:
    """A scorer on each report, at its own operating point: the committed one, or the one
    saved at ``scorer_path`` (``earlier_choice``: the decision before candidates, replayed on
    this run's greedy drafts, for a before-and-after table)."""
    choice = choice_for(_model(paths)) if scorer_path is None else earlier_choice(scorer_path)
    policy = choice.policy(Settings().min_relevance)
    out: dict[str, Any] = {"commit": commit(), "date": _today(), "scorer": choice.scorer.name,
                           "operating_point": choice.min_confidence, "reports": {}}
    for path in paths:
        report = path.name.split(".json")[0]
        items = decided(load_rows(read_report(path)), choice.scorer, policy,
                        greedy_only=scorer_path is not None)
        curve, area = risk_coverage(items)
        error, bins = ece(items)
        out["reports"][report] = {
            "at_operating_point": at_threshold(items, choice.min_confidence),
            "ece": round(error, 4), "area": round(area, 4), "reliability": bins}
        plot(report, curve, bins, RESULTS / f"{name}-{report}-curves")
    (RESULTS / f"{name}-curves.json").write_text(json.dumps(out, indent=1) + "\n",
                                                  encoding="utf-8")


def cmd_table(fit_paths: list[Path], sealed_paths: list[Path], before: Path) -> dict[str, Any]:
    """Per document, before and after: the fit documents left out (fitted without each), the
    sealed ones under the committed scorer; before, ``earlier_choice(before)`` on the same
    drafts. Written to eval/results/documents.json and printed as a markdown table."""
    chosen = plan(fit_paths)
    committed = choice_for(chosen.model)
    old = earlier_choice(before)
    min_relevance = Settings().min_relevance
    old_policy = old.policy(min_relevance)
    table: dict[str, Any] = {}
    for split, docs in (("fit", chosen.docs), ("sealed", documents(sealed_paths))):
        for doc in docs:
            after = chosen.held_out[doc.name] if split == "fit" else decided(
                doc.rows, committed.scorer, committed.policy(min_relevance))
            # The article is a fit document and has a sealed split: the two rows stay apart.
            name = f"{doc.name} (sealed split)" if doc.name in table else doc.name
            table[name] = {
                "split": split,
                "before": _cell(decided(doc.rows, old.scorer, old_policy, greedy_only=True),
                                old.min_confidence),
                "after": _cell(after, chosen.threshold if split == "fit"
                               else committed.min_confidence)}
    sealed = [s for doc in documents(sealed_paths)
              for s in decided(doc.rows, committed.scorer, committed.policy(min_relevance))]
    out: dict[str, Any] = {"commit": commit(), "date": _today(), "before": before.name,
                           "documents": table,
                           "strictness_sealed": strictness(sealed, committed.min_confidence),
                           "ece_sealed_pooled": round(ece(sealed)[0], 4),
                           "ece_fit_pooled_left_out": round(ece(
                               [s for items in chosen.held_out.values() for s in items])[0], 4)}
    (RESULTS / "documents.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print("| document | split | drafts right | answered precision | coverage | tempting "
          "refused | absent refused | ECE |\n|---|---|---|---|---|---|---|---|")
    for name, row in table.items():
        cells = [" → ".join(_count(row[w][m]) for w in ("before", "after"))
                 for m in ("drafts_right", "answered_precision", "answerable_coverage",
                           "tempting_refused", "absent_refused")]
        ece_cell = f"{row['before']['ece']:.3f} → {row['after']['ece']:.3f}"
        print(f"| {name} | {row['split']} | {' | '.join(cells)} | {ece_cell} |")
    print("\n| min_confidence | answered precision | answerable coverage | tempting refused | "
          "absent refused |\n|---|---|---|---|---|")
    for point in out["strictness_sealed"]:
        cells = [fmt(point[m]) for m in ("answered_precision", "answerable_coverage",
                                         "tempting_refused", "absent_refused")]
        print(f"| {point['min_confidence']}{' (default)' if point['default'] else ''} | "
              f"{' | '.join(cells)} |")
    return out


def strictness(items: list[Scored], default: float) -> list[dict[str, Any]]:
    """What each operating point buys on ``items``: answered precision, answerable coverage and
    unanswerable questions refused, from answering everything to answering only the surest."""
    points = sorted({0.0, 0.2, 0.4, 0.6, 0.8, round(default, 4)})
    found = []
    for t in points:
        at = at_threshold(items, t)
        found.append({"min_confidence": t, "default": t == round(default, 4),
                      **{k: at[k] for k in ("answered_precision", "answerable_coverage",
                                            "tempting_refused", "absent_refused", "accuracy")}})
    return found


def _cell(items: list[Scored], t: float) -> dict[str, Any]:
    return {**at_threshold(items, t), "ece": round(ece(items)[0], 4)}


def _count(rate: dict[str, Any]) -> str:
    k, n = rate["count"]
    return f"{k}/{n}" if n else "–"


def decided(rows: list[Row], scorer: Scorer, policy: Policy,
            greedy_only: bool = False) -> list[Scored]:
    """The rows as ``policy`` decides them (the confidence of the candidate it chooses), among
    every candidate or the greedy draft alone."""
    found = []
    for row in rows:
        trace = replace(row.trace, candidates=row.trace.candidates[:1]) if greedy_only \
            else row.trace
        verdict = policy.with_min_confidence(0.0).verdict(trace) if trace.drafted else None
        chosen = None if verdict is None or verdict.refused else verdict.chosen
        p = None if chosen is None else scorer.p_right(row.trace, row.trace.candidates[chosen])
        found.append(Scored(row.answerable, row.kind, p,
                            chosen is not None and row.candidate_right(chosen), row.draft_right,
                            _retrieved(row) if row.answerable else None))
    return found


def plot(title: str, curve: list[tuple[float, float, float]],
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
    figure.savefig(stem.parent / f"{stem.name}.png", dpi=80)  # names hold dots (whatsnew-3.1)
    plt.close(figure)


def fmt(rate: dict[str, Any]) -> str:
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
    for action in ("fit", "lodo", "levers", "curves", "table"):
        sub = actions.add_parser(action)
        sub.add_argument("reports", nargs="+", type=Path)
        if action == "table":
            sub.add_argument("--sealed", nargs="+", type=Path, required=True)
            sub.add_argument("--before", type=Path, required=True,
                             help="an earlier commit's saved scorer")
        if action == "fit":
            sub.add_argument("--out", type=Path)
        if action == "curves":
            sub.add_argument("--name", required=True)
            sub.add_argument("--scorer", type=Path, help="a saved scorer (default: committed)")
    args = parser.parse_args(argv)
    if args.action == "fit":
        cmd_fit(args.reports, args.out)
    elif args.action == "lodo":
        cmd_lodo(args.reports)
    elif args.action == "levers":
        cmd_levers(args.reports)
    elif args.action == "table":
        cmd_table(args.reports, args.sealed, args.before)
    else:
        cmd_curves(args.name, args.reports, args.scorer)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
