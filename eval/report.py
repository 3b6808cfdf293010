"""Human-readable eval reports: the summary table and the markdown report (failures first).

A rate is shown with its count and 95% Wilson score interval, ``0.875 (56/64) [0.77, 0.94]``;
means (answer_f1, mrr) and latencies as plain numbers.
"""

from __future__ import annotations

from typing import Any

from eval.gate import Check
from eval.metrics import METRIC_NAMES, wilson

# Per-question verdicts that do not make a question a failure: a right answer in a few more words
# than the gold span misses SQuAD's exact match but is still right (answer_strict); an answer
# padded around the gold passes the lenient answer_str_em and still fails.
_STRICTER_THAN_FAILURE = {"answer_em"}


def summary_table(
    values: dict[str, float | None],
    checks: list[Check],
    counts: dict[str, tuple[int, int]] | None = None,
) -> str:
    by_metric = {c.metric: c for c in checks}
    counts = counts or {}
    lines = ["| metric | value | bound | ok |", "|---|---|---|---|"]
    for name in METRIC_NAMES:
        check = by_metric.get(name)
        bound = f"{'≥' if check.kind == 'min' else '≤'} {check.bound}" if check else ""
        ok = ("yes" if check.passed else "NO") if check else ""
        lines.append(f"| {name} | {format_value(values.get(name), counts.get(name))} "
                     f"| {bound} | {ok} |")
    return "\n".join(lines)


def format_value(value: float | None, count: tuple[int, int] | list[int] | None = None) -> str:
    """``0.875 (56/64) [0.77, 0.94]`` for a rate with its count, else the plain number."""
    text = _fmt(value)
    if count is None:
        return text
    k, n = count
    interval = wilson(k, n)
    text += f" ({k}/{n})"
    return text + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def markdown(result: dict[str, Any], checks: list[Check]) -> str:
    rows = result["per_question"]
    failures = [r for r in rows if _failed(r)]
    passes = [r for r in rows if not _failed(r)]
    parts = [
        f"# Eval report: {result['gold']}",
        "",
        f"- model: `{result['model']}`, prompt: `{result['prompt']}`",
        f"- questions: {result['n']}, run {result['created_at']} in {result['duration_s']} s",
        *([f"- only doc: {', '.join(result['doc_filter'])}"] if result.get("doc_filter") else []),
        "",
        summary_table({k: result.get(k) for k in METRIC_NAMES}, checks,
                      {k: (v[0], v[1]) for k, v in result.get("counts", {}).items()}),
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
    return any(v is False for k, v in row["pass"].items() if k not in _STRICTER_THAN_FAILURE)


def _question(row: dict[str, Any]) -> str:
    failed = [name for name, ok in row["pass"].items() if ok is False]
    expected = ", ".join(gold if isinstance(gold, str) else " + ".join(gold)
                         for gold in row["gold_answers"]) or "(not answerable: should refuse)"
    lines = [
        f"### {row['id']}: {row['question']}",
        *([f"- searching for: {row['standalone_question']}"] if row.get("standalone_question")
          else []),
        f"- expected: {expected}",
        f"- answer: {row['answer']}" + (f" (refused: {row['refusal_reason']})" * row["refused"]),
    ]
    if failed:
        label = "failed" if _failed(row) else "missed, though right by answer_strict"
        lines.append(f"- {label}: {', '.join(failed)}")
    lines += [f"- [{c['id']}] {c['source']} {c['start']}-{c['end']}: “{c['quote']}”"
              for c in row["citations"]]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
