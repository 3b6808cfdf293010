"""Human-readable eval reports: the summary table and the markdown report (failures first)."""

from __future__ import annotations

from typing import Any

from eval.gate import Check
from eval.metrics import METRIC_NAMES


def summary_table(values: dict[str, float | None], checks: list[Check]) -> str:
    by_metric = {c.metric: c for c in checks}
    lines = ["| metric | value | bound | ok |", "|---|---|---|---|"]
    for name in METRIC_NAMES:
        check = by_metric.get(name)
        bound = f"{'≥' if check.kind == 'min' else '≤'} {check.bound}" if check else ""
        ok = ("yes" if check.passed else "NO") if check else ""
        lines.append(f"| {name} | {_fmt(values[name])} | {bound} | {ok} |")
    return "\n".join(lines)


def markdown(result: dict[str, Any], checks: list[Check]) -> str:
    rows = result["per_question"]
    failures = [r for r in rows if _failed(r)]
    passes = [r for r in rows if not _failed(r)]
    parts = [
        f"# Eval report: {result['gold']}",
        "",
        f"- model: `{result['model']}`, prompt: `{result['prompt']}`",
        f"- questions: {result['n']}, run {result['created_at']} in {result['duration_s']} s",
        "",
        summary_table({k: result[k] for k in METRIC_NAMES}, checks),
        "",
        f"## Failures ({len(failures)})",
        "",
        *(_question(r) for r in failures),
        f"## Passes ({len(passes)})",
        "",
        *(_question(r) for r in passes),
    ]
    return "\n".join(parts)


def _failed(row: dict[str, Any]) -> bool:
    return any(v is False for v in row["pass"].values())


def _question(row: dict[str, Any]) -> str:
    failed = [name for name, ok in row["pass"].items() if ok is False]
    expected = ", ".join(row["gold_answers"]) or "(not answerable: should refuse)"
    lines = [
        f"### {row['id']}: {row['question']}",
        f"- expected: {expected}",
        f"- answer: {row['answer']}" + (f" (refused: {row['refusal_reason']})" * row["refused"]),
    ]
    if failed:
        lines.append(f"- failed: {', '.join(failed)}")
    lines += [f"- [{c['id']}] {c['source']} {c['start']}-{c['end']}: “{c['quote']}”"
              for c in row["citations"]]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
