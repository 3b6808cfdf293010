"""What each refusal signal contributes, measured from eval reports.

``rag eval`` records every signal's verdict on every draft (``trace.signals``; the decision does
not change). From those, each signal is taken out in turn and the run re-decided without it:
its contribution is the accuracy lost without it, with the refusals only it makes, right ones
(unanswerable questions) and wrong ones (answerable questions whose draft was right).

    python -m eval.signals reports/article-tune-default.json reports/article-test-default.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import contains_answer
from rag.refusal import SIGNALS

DRAFT_SIGNALS = [s.name for s in SIGNALS if s.stage != "retrieved"]


@dataclass(frozen=True)
class Row:
    answerable: bool
    draft_right: bool  # the draft answers correctly (before any refusal)
    has_answer: bool  # the model drafted an answer at all
    fired: frozenset[str]  # the signals that would refuse it; "retrieval" when no draft was made


def rows(report: dict[str, Any]) -> list[Row]:
    found = []
    for q in report["per_question"]:
        trace = q.get("trace") or {}
        signals = trace.get("signals")
        draft = str(trace.get("draft", ""))
        if signals is None and trace:
            raise ValueError(f"{q['id']}: no signal verdicts in the report: re-run `rag eval`")
        fired = frozenset(n for n, why in (signals or {}).items() if why) if trace else frozenset(
            {"retrieval"})
        found.append(Row(
            answerable=bool(q["answerable"]),
            draft_right=draft_is_right(q),
            has_answer=bool(draft),
            fired=fired,
        ))
    return found


def draft_is_right(q: dict[str, Any]) -> bool:
    """The report row's draft answers its question correctly (before any refusal)."""
    draft = str((q.get("trace") or {}).get("draft", ""))
    return bool(q["answerable"] and draft and contains_answer(draft, q["gold_answers"]))


def accuracy(found: list[Row], without: str | None = None) -> float:
    right = 0
    for row in found:
        refused = not row.has_answer or bool(row.fired - {without} if without else row.fired)
        right += (row.answerable and not refused and row.draft_right) or (
            not row.answerable and refused)
    return right / len(found)


def contributions(found: list[Row]) -> list[dict[str, Any]]:
    base = accuracy(found)
    table = []
    for name in DRAFT_SIGNALS:
        alone = [r for r in found if r.has_answer and r.fired == {name}]
        table.append({
            "signal": name,
            "fires": sum(name in r.fired for r in found),
            "only_it_refuses_unanswerable": sum(not r.answerable for r in alone),
            "only_it_refuses_right_draft": sum(r.draft_right for r in alone),
            "accuracy_without": accuracy(found, name),
            "contribution": base - accuracy(found, name),
        })
    return table


def markdown(reports: list[Path]) -> str:
    lines = ["| signal | " + " | ".join(p.stem for p in reports) + " |",
             "|---|" + "---|" * len(reports)]
    tables = [{t["signal"]: t for t in contributions(rows(_load(p)))} for p in reports]
    for name in DRAFT_SIGNALS:
        cells = []
        for table in tables:
            t = table[name]
            cells.append(f"{t['contribution']:+.3f} (fires {t['fires']}; alone: "
                         f"{t['only_it_refuses_unanswerable']} right, "
                         f"{t['only_it_refuses_right_draft']} wrong)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.signals", description=__doc__)
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of `rag eval`")
    print(markdown(parser.parse_args().reports))


if __name__ == "__main__":
    main()
