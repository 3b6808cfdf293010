"""``rag eval``: run a gold set through ``Pipeline.ask`` and score it.

Without ``--docs`` it evaluates the current index; with ``--docs`` it first builds a temporary
index of those documents, so the same harness evaluates any corpus. ``--doc NAME`` keeps only the
gold questions whose ``doc`` is NAME and, with ``--docs``, indexes only the files named NAME (any
extension), so one document's questions are asked of that document alone.
"""

from __future__ import annotations

import argparse
import json
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
from rag.conversation import Turn
from rag.errors import InputError
from rag.model_loading import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.types import Answer

EXIT_GATE_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gold", type=Path, required=True, help="gold questions (JSONL)")
    parser.add_argument("--docs", type=Path, nargs="+", help="evaluate these documents instead")
    parser.add_argument("--doc", dest="doc_names", action="append", metavar="NAME",
                        help="only the gold questions whose doc is NAME (repeatable); with --docs "
                             "only the files whose name without extension is NAME are indexed")
    parser.add_argument("--json", dest="json_out", type=Path, help="write the JSON report here")
    parser.add_argument("--markdown", type=Path, help="write the markdown report here")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--sample", type=int, help="a fixed random sample of N questions")
    parser.add_argument("--seed", type=int, default=13, help="seed of --sample (default 13)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a metric misses its bound in eval/thresholds.toml")
    parser.add_argument("--gate", help="thresholds section (default: the --llm choice)")


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    # Every refusal signal's verdict on every draft goes into the report (the answers do not
    # change): what each signal contributes is measured from them (python -m eval.signals).
    settings = settings.replace(explain_refusals=True)
    names: list[str] | None = args.doc_names
    items = select(of_docs(load_gold(args.gold), names), args.limit, args.sample, args.seed)
    docs = docs_named(args.docs, names) if args.docs and names else args.docs
    section = args.gate or settings.llm
    bounds = gate.load_bounds(section) if args.check else None
    if bounds is not None and not any(bounds.values()):
        print(f"note: [{section}] in eval/thresholds.toml sets no bounds yet: nothing is gated",
              file=sys.stderr)
    started = time.perf_counter()
    with open_pipeline(settings, docs) as pipeline:
        rows, outcomes = run_questions(pipeline, items)
    values = metrics.compute(outcomes)
    counts = metrics.counts(outcomes)
    checks = gate.evaluate(values, bounds) if bounds else []
    result = {
        **values,
        "counts": {name: list(count) for name, count in counts.items()},
        "n": len(items),
        "model": pipeline.model_name,
        "prompt": pipeline.prompt_version,
        "settings": pipeline.settings.public(),
        "gold": str(args.gold),
        "docs": [str(d) for d in docs] if docs else None,
        "doc_filter": names,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 1),
        "gate": [asdict(c) | {"passed": c.passed} for c in checks],
        "per_question": rows,
    }
    print(report.summary_table(values, checks, counts))
    if args.json_out:
        _write(args.json_out, json.dumps(result, indent=2, ensure_ascii=False))
    if args.markdown:
        _write(args.markdown, report.markdown(result, checks))
    failed = [c for c in checks if not c.passed]
    if failed:
        print(f"quality gate FAILED: {'; '.join(c.describe() for c in failed)}", file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


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


@contextmanager
def open_pipeline(settings: Settings, docs: list[Path] | None) -> Iterator[Pipeline]:
    embedder = Embedder(settings.threads)
    if not docs:
        ensure_default_index(settings, announce=lambda msg: print(msg, file=sys.stderr))
        yield Pipeline.load(settings, embedder)
        return
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as folder:
        scoped = settings.replace(index_dir=Path(folder) / "index")
        build_index(scoped, docs, embedder)
        yield Pipeline.load(scoped, embedder)


def run_questions(
    pipeline: Pipeline, items: list[GoldItem]
) -> tuple[list[dict[str, Any]], list[metrics.QuestionOutcome]]:
    texts = {doc_id: doc.text for doc_id, doc in pipeline.index.documents.items()}
    rows, outcomes = [], []
    for item in tqdm(items, desc="eval", unit="q", file=sys.stderr, disable=None):
        started = time.perf_counter()
        answer = pipeline.ask(item.question, history=[Turn(*t) for t in item.history])
        outcome = _outcome(item, answer, texts, time.perf_counter() - started)
        outcomes.append(outcome)
        rows.append(_row(item, answer, outcome))
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


def _row(item: GoldItem, answer: Answer, outcome: metrics.QuestionOutcome) -> dict[str, Any]:
    rank = outcome.evidence_rank
    hits = outcome.citation_hits()
    answerable = item.answerable
    answered = not answer.refused  # citations of an unanswerable question answered are all wrong
    return {
        "id": item.id,
        "question": item.question,
        "standalone_question": answer.standalone_question,
        "answerable": answerable,
        "gold_answers": list(item.answers),
        "answer": answer.answer,
        "refused": answer.refused,
        "refusal_reason": answer.refusal_reason,
        "trace": answer.trace,
        "citations": [asdict(c) for c in answer.citations],
        "passages": [p.chunk.chunk_id for p in answer.passages],
        # Spans, so another refusal rule can be replayed on this report (eval.calibrate).
        "passage_spans": [[p.source, p.start, p.end] for p in outcome.passages],
        "evidence_spans": [[e.source, e.start, e.end] for e in outcome.evidence],
        "latency_s": round(outcome.latency_s, 3),
        "f1": round(outcome.f1, 3) if answerable else None,
        "evidence_rank": rank,
        "pass": {
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
    path.write_text(text + "\n", encoding="utf-8")
