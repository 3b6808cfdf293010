"""``python -m eval``: run a gold set through ``Pipeline.ask`` and score it.

Without ``--docs`` it evaluates the current index; with ``--docs`` it first builds a temporary
index of those documents, so the same harness evaluates any corpus. ``--doc NAME`` keeps only the
gold questions whose ``doc`` is NAME and, with ``--docs``, indexes only the files named NAME (any
extension), so one document's questions are asked of that document alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eval import gate, metrics, report
from eval.gold import GoldItem, load_gold, select
from index_build.build import build_index, ensure_default_index
from index_build.reading import files_under
from rag.cli import run_command, settings_parser
from rag.decision.policy import Policy
from rag.errors import InputError
from rag.factory import load_pipeline
from rag.pipeline import Pipeline
from rag.retrieval.embedder import Embedder
from rag.settings import Settings
from rag.types import Answer, Question, Turn

EXIT_GATE_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    return run_command(cmd_eval, eval_parser().parse_args(argv))


def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", parents=[settings_parser()],
                                     description="Score a gold question set.")
    parser.add_argument("--gold", type=Path, required=True, help="gold questions (JSONL)")
    parser.add_argument("--docs", type=Path, nargs="+", help="evaluate these documents instead")
    parser.add_argument("--doc", dest="doc_names", action="append", metavar="NAME",
                        help="only the gold questions whose doc is NAME (repeatable); with --docs "
                             "only the files whose name without extension is NAME are indexed")
    parser.add_argument("--json", dest="json_out", type=Path, help="write the JSON report here")
    parser.add_argument("--markdown", type=Path, help="write the markdown report here")
    parser.add_argument("--summary", type=Path,
                        help="write a short summary here (metrics with counts and intervals, "
                             "model, prompts, policy, commit, date, the gate's bounds); "
                             "eval/results/ holds the committed ones")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--sample", type=int, help="a fixed random sample of N questions")
    parser.add_argument("--seed", type=int, default=13, help="seed of --sample (default 13)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a metric misses its bound in eval/thresholds.toml")
    parser.add_argument("--gate", help="thresholds section (default: the --llm choice)")
    parser.add_argument("--as-served", action="store_true",
                        help="measure only what the service measures for its decision (faster; "
                             "the report cannot be replayed with another policy or fitted on)")
    return parser


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    names: list[str] | None = args.doc_names
    items = select(of_docs(load_gold(args.gold), names), args.limit, args.sample, args.seed)
    docs = docs_named(args.docs, names) if args.docs and names else args.docs
    section = args.gate or settings.llm
    bounds = gate.load_bounds(section) if args.check else None
    if bounds is not None and not any(bounds.values()):
        print(f"note: [{section}] in eval/thresholds.toml sets no bounds yet: nothing is gated",
              file=sys.stderr)
    started = time.perf_counter()
    with open_pipeline(settings, docs, explain=not args.as_served) as pipeline:
        rows, outcomes = run_questions(pipeline, settings, items)
    values = metrics.compute(outcomes)
    counts = metrics.counts(outcomes)
    checks = gate.evaluate(values, bounds) if bounds else []
    result = {
        **values,
        "counts": {name: list(count) for name, count in counts.items()},
        "n": len(items),
        "model": pipeline.model_name,
        "prompt": pipeline.prompt_version,
        "policy": {"scorer": pipeline.policy.scorer.name,
                   "min_relevance": pipeline.policy.min_relevance,
                   "min_confidence": pipeline.policy.min_confidence},
        "settings": settings.public(),
        "gold": str(args.gold),
        "docs": [str(d) for d in docs] if docs else None,
        "doc_filter": names,
        "commit": commit(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 1),
        "explained": not args.as_served,
        "gate": [asdict(c) | {"passed": c.passed} for c in checks],
        "per_question": rows,
    }
    print(report.summary_table(values, checks, counts))
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if args.json_out:
        _write(args.json_out, text)
    if args.markdown:
        _write(args.markdown, report.markdown(result, checks) + "\n")
    if args.summary:
        written = summary(result, section if bounds else None, bounds, report_sha256(text))
        _write(args.summary, json.dumps(written, indent=2, ensure_ascii=False) + "\n")
    failed = [c for c in checks if not c.passed]
    if failed:
        print(f"quality gate FAILED: {'; '.join(c.describe() for c in failed)}", file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


def report_sha256(text: str) -> str:
    """The identity of a report: the sha256 of its JSON text (the committed copy is gzipped)."""
    return hashlib.sha256(text.encode()).hexdigest()


def summary(result: dict[str, Any], section: str | None,
            bounds: dict[str, dict[str, float]] | None, sha256: str) -> dict[str, Any]:
    """What a committed result records: enough to trace a quoted number to its run — the
    report's sha256 and the commit the report (not this summary) was produced on."""
    rates = {}
    for name in metrics.METRIC_NAMES:
        value = result[name]
        entry: dict[str, Any] = {"value": None if value is None else round(value, 4)}
        if name in result["counts"]:
            k, n = result["counts"][name]
            interval = metrics.wilson(k, n)
            entry |= {"count": [k, n],
                      "interval": [round(x, 3) for x in interval] if interval else None}
        rates[name] = entry
    return {
        "gold": result["gold"], "doc_filter": result["doc_filter"], "n": result["n"],
        "model": result["model"], "prompt": result["prompt"], "policy": result["policy"],
        "report_sha256": sha256, "commit": result["commit"], "date": result["created_at"][:10],
        "gate": section, "bounds": bounds, "passed": all(c["passed"] for c in result["gate"]),
        "metrics": rates,
    }


def commit() -> str:
    """The checked-out commit, marked when the tree has changes beside it."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False,
                              cwd=Path(__file__).resolve().parent)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def of_docs(items: list[GoldItem], names: list[str] | None) -> list[GoldItem]:
    """The gold questions whose ``doc`` is one of ``names`` (all of them when names is None)."""
    if not names:
        return items
    kept = [item for item in items if item.doc in names]
    known = {item.doc for item in items if item.doc is not None}
    missing = [name for name in names if name not in known]
    if missing:
        shown = ", ".join(sorted(known)) or "none: the gold file has no doc fields"
        raise InputError(f"no gold question has doc {', '.join(map(repr, missing))} "
                         f"(docs in the gold file: {shown})")
    return kept


def docs_named(paths: list[Path], names: list[str]) -> list[Path]:
    """The document files under ``paths`` whose name without its extension is one of ``names``."""
    found = [path for root in paths for path, _ in files_under(root) if path.stem in names]
    files = list(dict.fromkeys(found))  # a file given both itself and by its folder: once
    missing = [name for name in names if name not in {path.stem for path in files}]
    if missing:
        raise InputError(f"no document named {', '.join(map(repr, missing))} under "
                         f"{', '.join(map(str, paths))}")
    return files


# Explaining, every draft is measured in full and every gate's verdict recorded, so other policies
# can be replayed on the report (python -m eval.decisions, eval.fit); as served, only what the
# service's own decision needs is measured.
@contextmanager
def open_pipeline(settings: Settings, docs: list[Path] | None,
                  explain: bool = True) -> Iterator[Pipeline]:
    embedder = Embedder(settings.threads)
    if not docs:
        ensure_default_index(settings, announce=lambda msg: print(msg, file=sys.stderr))
        yield load_pipeline(settings, embedder, explain=explain)
        return
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as folder:
        scoped = settings.replace(index_dir=Path(folder) / "index")
        build_index(scoped, docs, embedder)
        yield load_pipeline(scoped, embedder, explain=explain)


def run_questions(
    pipeline: Pipeline, settings: Settings, items: list[GoldItem]
) -> tuple[list[dict[str, Any]], list[metrics.QuestionOutcome]]:
    texts = {doc_id: doc.text for doc_id, doc in pipeline.index.documents.items()}
    rows, outcomes = [], []
    for item in tqdm(items, desc="eval", unit="q", file=sys.stderr, disable=None):
        started = time.perf_counter()
        question = Question.checked(item.question, settings,
                                    history=[Turn(*t) for t in item.history])
        answer = pipeline.ask(question)
        outcome = _outcome(item, answer, texts, time.perf_counter() - started)
        outcomes.append(outcome)
        rows.append(_row(item, answer, outcome, pipeline.policy))
    return rows, outcomes


def _outcome(
    item: GoldItem, answer: Answer, texts: dict[str, str], latency: float
) -> metrics.QuestionOutcome:
    return metrics.QuestionOutcome(
        answerable=item.answerable,
        golds=item.answers,
        answer=answer.answer,
        refused=answer.refused,
        citations=tuple(metrics.Located(c.source, c.start, c.end) for c in answer.citations),
        passages=tuple(
            metrics.Located(p.chunk.source, p.chunk.start, p.chunk.end) for p in answer.passages
        ),
        evidence=tuple(metrics.locate(item.evidence, texts)),
        latency_s=latency,
    )


def _row(item: GoldItem, answer: Answer, outcome: metrics.QuestionOutcome,
         policy: Policy) -> dict[str, Any]:
    rank = outcome.evidence_rank
    hits = outcome.citation_hits()
    answerable = item.answerable
    answered = not answer.refused  # citations of an unanswerable question answered are all wrong
    return {
        "id": item.id,
        "question": item.question,
        "standalone_question": answer.standalone_question,
        "answerable": answerable,
        "kind": item.kind,
        "gold_answers": list(item.answers),
        "answer": answer.answer,
        "refused": answer.refused,
        "refusal_reason": answer.refusal_reason,
        "confidence": answer.confidence,
        "trace": answer.trace.to_dict() if answer.trace else None,
        # Every gate's verdict on the draft, each alone, for a reader of the report.
        "gates": policy.explain(answer.trace) if answer.trace and answer.trace.drafted else None,
        "citations": [asdict(c) for c in answer.citations],
        "passages": [p.chunk.chunk_id for p in answer.passages],
        # Spans, so another decision can be replayed on this report (eval.decisions).
        "passage_spans": [[p.source, p.start, p.end] for p in outcome.passages],
        "evidence_spans": [[e.source, e.start, e.end] for e in outcome.evidence],
        "latency_s": round(outcome.latency_s, 3),
        "f1": round(outcome.f1, 3) if answerable else None,
        "evidence_rank": rank,
        "pass": {
            "answer_strict": outcome.right if answerable else None,
            "answer_em": outcome.exact if answerable else None,
            "answer_str_em": outcome.answer_hit if answerable else None,
            "refusal": outcome.refusal_correct,
            "citation_precision": all(hits) if answered and hits else None,
            "citation_recall": outcome.cited_evidence if answerable else None,
            "retrieval": rank is not None if answerable else None,
        },
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
