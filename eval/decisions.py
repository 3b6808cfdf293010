"""Decisions replayed on eval reports: what the service decided, and what each part of it adds.

``python -m eval`` records every question's trace (all measurements, in explain mode) with the
policy it ran. ``replay`` runs ``Policy.verdict`` — the function the service decides with — on
those traces, so any policy can be scored on the same drafts without the model:

    python -m eval.decisions reports/article-tune-default.json reports/squad-*.json

prints, per report, the metrics as run and each gate's and the confidence's leave-one-out
contribution (questions right with it minus without it).
"""

from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eval import metrics
from eval.gold import load_gold
from eval.metrics import Located, QuestionOutcome, is_right
from rag.decision.policy import Policy, Verdict
from rag.decision.scorers import choice_for
from rag.settings import PROJECT_ROOT
from rag.types import CandidateTrace, Trace


@dataclass(frozen=True)
class Row:
    """One report question: what is needed to score any verdict on it."""

    id: str
    answerable: bool
    golds: tuple[metrics.Gold, ...]
    trace: Trace
    passages: tuple[Located, ...]
    evidence: tuple[Located, ...]
    latency_s: float
    refused: bool  # as run
    refusal_reason: str
    answer: str  # as run
    citations: tuple[Located, ...]  # as run
    kind: str | None = None  # the gold set's kind of question, where it says

    @property
    def draft_right(self) -> bool:
        """The model's greedy draft answers its question strictly right (before any gate)."""
        return bool(self.answerable and self.trace.draft
                    and is_right(self.trace.draft, self.golds))

    def candidate_right(self, i: int) -> bool:
        """Candidate ``i`` answers the question strictly right."""
        return self.answerable and is_right(self.trace.candidates[i].text, self.golds)


@dataclass(frozen=True)
class Report:
    path: Path
    model: str
    policy: Policy
    rows: list[Row]


def read_report(path: Path) -> dict[str, Any]:
    """An eval report's JSON, from a ``.json`` or a gzipped ``.json.gz`` file."""
    data: dict[str, Any] = json.loads(report_text(path))
    return data


def report_text(path: Path) -> str:
    """An eval report's text, from a ``.json`` or a gzipped ``.json.gz`` file."""
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")


def load_report(path: Path) -> Report:
    """A report with the policy it ran (this code must have that policy's scorer)."""
    data = read_report(path)
    run = data["policy"]
    choice = choice_for(data["model"])
    if run["scorer"] != choice.scorer.name:
        raise ValueError(f"{path}: run with scorer {run['scorer']!r}, which this code does not "
                         f"have for {data['model']} (it has {choice.scorer.name!r})")
    policy = choice.policy(run["min_relevance"], run["min_confidence"])
    return Report(path, data["model"], policy, load_rows(data))


def load_rows(data: dict[str, Any]) -> list[Row]:
    """A report's questions, each with its trace (and its kind from the gold file, for a report
    written before reports recorded it)."""
    if data.get("explained") is False:
        raise ValueError(f"{data['gold']}: this report was run --as-served, so its traces hold "
                         "only what the service measured: run `python -m eval` without "
                         "--as-served (as make eval does) for a report to replay or fit on")
    kinds = _gold_kinds(data) if any("kind" not in q for q in data["per_question"]) else {}
    return [_row(q | {"kind": q.get("kind", kinds.get(q["id"]))}) for q in data["per_question"]]


def _gold_kinds(data: dict[str, Any]) -> dict[str, str | None]:
    path = PROJECT_ROOT / data["gold"]
    if not path.is_file():
        return {}
    return {item.id: item.kind for item in load_gold(path)}


def _row(q: dict[str, Any]) -> Row:
    return Row(
        id=q["id"], answerable=q["answerable"],
        golds=tuple(g if isinstance(g, str) else tuple(g) for g in q["gold_answers"]),
        trace=Trace.from_dict(q["trace"]), passages=_located(q["passage_spans"]),
        evidence=_located(q["evidence_spans"]), latency_s=q["latency_s"],
        refused=q["refused"], refusal_reason=q["refusal_reason"], answer=q["answer"],
        citations=tuple(Located(c["source"], c["start"], c["end"]) for c in q["citations"]),
        kind=q.get("kind"),
    )


def replay(rows: list[Row], policy: Policy) -> list[Verdict]:
    return [policy.verdict(row.trace) for row in rows]


def outcomes(rows: list[Row], verdicts: list[Verdict]) -> list[QuestionOutcome]:
    """The rows scored as if ``verdicts`` had been decided (the drafts are as run)."""
    return [
        QuestionOutcome(
            answerable=row.answerable, golds=row.golds,
            answer="" if verdict.refused else _chosen(row, verdict).text,
            refused=verdict.refused,
            citations=() if verdict.refused else tuple(
                Located(*span) for span in _chosen(row, verdict).support_citations),
            passages=row.passages, evidence=row.evidence, latency_s=row.latency_s,
        )
        for row, verdict in zip(rows, verdicts, strict=True)
    ]


def _chosen(row: Row, verdict: Verdict) -> CandidateTrace:
    if verdict.chosen is None:
        raise ValueError(f"{row.id}: answered without a chosen candidate")
    return row.trace.candidates[verdict.chosen]


def as_run(rows: list[Row]) -> list[QuestionOutcome]:
    """The rows scored as the report's run answered them."""
    return [QuestionOutcome(answerable=row.answerable, golds=row.golds, answer=row.answer,
                            refused=row.refused, citations=row.citations, passages=row.passages,
                            evidence=row.evidence, latency_s=row.latency_s) for row in rows]


def right(rows: list[Row], policy: Policy) -> int:
    """Questions right under ``policy``: answered right, or refused when unanswerable."""
    return sum(o.correct for o in outcomes(rows, replay(rows, policy)))


def contributions(rows: list[Row], policy: Policy) -> dict[str, int]:
    """Each gate's, and the confidence's, leave-one-out contribution: questions right with it
    minus questions right without it."""
    base = right(rows, policy)
    gates = policy.gates
    found = {gate.name: base - right(rows, replace(policy, gates=tuple(
        g for g in gates if g is not gate))) for gate in gates}
    found["confidence"] = base - right(rows, replace(policy, min_confidence=0.0))
    return found


def _located(spans: list[list[Any]]) -> tuple[Located, ...]:
    return tuple(Located(str(source), int(start), int(end)) for source, start, end in spans)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.decisions", description=__doc__)
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of python -m eval")
    for path in parser.parse_args().reports:
        report = load_report(path)
        verdicts = replay(report.rows, report.policy)
        values = metrics.compute(outcomes(report.rows, verdicts))
        print(json.dumps({"report": path.name, "accuracy": values["accuracy"],
                          "contributions": contributions(report.rows, report.policy)}))


if __name__ == "__main__":
    main()
