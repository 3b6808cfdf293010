"""``python -m bench [--quick]``: all benchmarks in one run, a table, bench/results/latest.json.

Each number is measured in this run next to its reference (the naive pipeline, the llama.cpp
floor, encode-only embedding, exact search), so ratios compare like with like on this machine.
Phases run one after another: two llama.cpp processes at once would slow each other down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench import build_speed, hostile, latency, llama_builds, report, scale, service, uploads
from bench.naive import NaivePipeline
from eval.gold import GoldItem, load_gold, select
from index_build.build import build_index
from rag.factory import load_pipeline, warm_up
from rag.llm.loading import choose_model
from rag.retrieval.embedder import Embedder
from rag.settings import BUNDLED_CORPUS, PROJECT_ROOT, Settings

RESULTS = PROJECT_ROOT / "bench" / "results"
GOLD = PROJECT_ROOT / "eval" / "gold" / "article.jsonl"
# A corpus of several documents, larger than the model's context (read-only, optional).
SQUAD = PROJECT_ROOT.parent / "shared" / "benchmarks" / "squad2-dev-2articles"

PROFILES: dict[str, dict[str, Any]] = {
    "full": {"llm": "default", "questions": 40, "squad_questions": 40, "generated_chunks": 20_000,
             "sizes": [10_000, 100_000, 1_000_000], "levels": {1: 10, 4: 16, 16: 32},
             "total_questions": 200, "llama_builds": "native", "engine_chunks": 4_000,
             "hostile": "full"},
    "quick": {"llm": "small", "questions": 8, "squad_questions": 8, "generated_chunks": 2_000,
              "sizes": [10_000, 100_000], "levels": {1: 2, 4: 4, 16: 16},
              "total_questions": 30, "llama_builds": "", "engine_chunks": 1_000,
              "hostile": "quick"},
}
LAYOUTS = ("retrieval", "reuse", "corpus")
PHASES = ("llama-builds", "index-build", "growth", "retrieval", "latency", "uploads", "service",
          "hostile")
HOSTILE_QUESTIONS = 4  # asked during each hostile case, and idle


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small model, fewer questions")
    parser.add_argument("--out", type=Path, help="default bench/results/latest.json")
    parser.add_argument("--only", choices=PHASES, action="append",
                        help="run only this phase (repeatable)")
    parser.add_argument("--llama-builds", help="other llama.cpp builds to compare with the "
                        "installed one, comma-separated (native, avx2, avx512; '' for none)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS),
                        help="the prompt layouts the latency phase measures, comma-separated "
                        f"(default {','.join(LAYOUTS)})")
    parser.add_argument("--reuse", default="",
                        help="variants of the reuse layout to measure, comma-separated "
                        "PASSAGES:TOKENS (the best passages read whole : first tokens of every "
                        "stored one read anew), e.g. 2:0,0:8; default the settings' own")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the latency phase's llama.cpp floor (a replay of every read, "
                        "which doubles the phase's time)")
    parser.add_argument("--no-documents", action="store_true",
                        help="skip the latency phase's corpus larger than the context")
    args = parser.parse_args()
    profile = PROFILES["quick" if args.quick else "full"]
    phases = set(args.only or PHASES)
    others = [b for b in (args.llama_builds if args.llama_builds is not None
                          else profile["llama_builds"]).split(",") if b]
    started = time.perf_counter()
    results: dict[str, Any] = {"profile": "quick" if args.quick else "full",
                               "machine": _machine(), "started_at": _now()}
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as scratch:
        work = Path(scratch)
        settings = Settings.from_env({k: v for k, v in os.environ.items() if k == "RAG_MODEL_DIR"},
                                     index_dir=work / "index", llm=profile["llm"])
        if "llama-builds" in phases:
            _phase(f"llama.cpp builds: installed against {', '.join(others) or 'nothing'}")
            model = choose_model(settings)
            results["llama_builds"] = llama_builds.measure(model.path, model.name,
                                                           settings.threads, others,
                                                           work / "builds")
        if phases - {"llama-builds"}:
            layouts = _layout_settings(settings, [m for m in args.layouts.split(",") if m],
                                       [v for v in args.reuse.split(",") if v])
            _run_pipeline_phases(phases, profile, settings, work, results, layouts,
                                 documents=not args.no_documents, floor=not args.no_floor)
    results["duration_s"] = time.perf_counter() - started
    out = args.out or RESULTS / ("latest.json" if not args.only
                                 else f"only-{'-'.join(sorted(phases))}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report.table(results))
    print(f"\nwrote {out}")


def _layout_settings(settings: Settings, modes: list[str],
                     reuse: list[str]) -> dict[str, Settings]:
    """Each layout measured, by name; the reuse layout once per variant, the one reading fewest
    passages whole first (its cold pass stores every passage the others append)."""
    layouts: dict[str, Settings] = {}
    for mode in modes:
        if mode != "reuse" or not reuse:
            layouts[mode] = settings.replace(prompt_mode=mode)
            continue
        for passages, tokens in sorted(tuple(map(int, v.split(":"))) for v in reuse):
            layouts[f"reuse-p{passages}-k{tokens}"] = settings.replace(
                prompt_mode=mode, reuse_fresh_passages=passages, reuse_fresh_tokens=tokens)
    return layouts


def _run_pipeline_phases(phases: set[str], profile: dict[str, Any], settings: Settings,
                         work: Path, results: dict[str, Any], layouts: dict[str, Settings],
                         documents: bool, floor: bool) -> None:
    embedder = Embedder(settings.threads)
    build_index(settings, [BUNDLED_CORPUS], embedder)
    items = select(load_gold(GOLD), None, profile["questions"], 13)
    questions = [item.question for item in items]

    if phases & {"index-build", "retrieval", "growth"}:
        _phase("index build throughput")
        generated = work / "generated"
        build_speed.generate_corpus(generated, profile["generated_chunks"])
        results["index_build"] = [
            build_speed.measure("bundled article", BUNDLED_CORPUS),
            build_speed.measure("generated", generated, keep=work / "generated-index"),
        ]

    if "growth" in phases:
        _phase("a growing corpus: one document added; one process against Ray")
        full = next(b for b in results["index_build"] if b["corpus"] == "generated")
        results["growth"] = {
            "incremental": build_speed.measure_growth(work / "generated",
                                                      work / "generated-index", full["build_s"]),
            "engines": build_speed.measure_engines(_subcorpus(work, profile["engine_chunks"]),
                                                   work / "engines"),
        }

    if "retrieval" in phases:
        _phase("retrieval at scale")
        base = _vectors(work / "generated-index")
        results["retrieval_scale"] = scale.measure(base, embedder.encode(questions),
                                                   profile["sizes"])
        scale.plot(results["retrieval_scale"], str(RESULTS / "retrieval_scale.png"))

    if "latency" in phases:
        _phase("answer latency: every prompt layout" + (" and the llama.cpp floor" if floor
                                                          else "") + ", then naive")
        modes = {name: _layout(chosen, embedder, items, floor)
                 for name, chosen in layouts.items()}
        reference = _naive(BUNDLED_CORPUS.read_text(encoding="utf-8"), embedder, settings,
                           questions)
        results["answer_latency"] = {"naive": reference, "modes": {
            mode: result | latency.ratios(result, reference) for mode, result in modes.items()}}
        if documents and SQUAD.is_dir():
            _phase("answer latency on several documents larger than the context: full read "
                   "against stored passages")
            scoped = settings.replace(index_dir=work / "squad-index")
            docs = sorted((SQUAD / "docs").glob("*.txt"))
            build_index(scoped, docs, embedder)
            sample = select(load_gold(SQUAD / "gold.jsonl"), None, profile["squad_questions"], 13)
            measured = {name: _layout(chosen.replace(index_dir=scoped.index_dir), embedder,
                                      sample, floor)
                        for name, chosen in layouts.items() if chosen.prompt_mode != "corpus"}
            reference = _naive("\n\n".join(d.read_text(encoding="utf-8") for d in docs),
                               embedder, settings, [item.question for item in sample])
            results["answer_latency_documents"] = {
                "corpus": "SQuAD 2.0 dev, 2 articles in one index", "naive": reference,
                "modes": {name: result | latency.ratios(result, reference)
                          for name, result in measured.items()}}

    if "uploads" in phases:
        _phase("documents uploaded to two replicas: upload to answerable, beside a full rebuild")
        scoped = settings.replace(index_dir=work / "upload-index")
        env = {"RAG_INDEX_DIR": str(scoped.index_dir), "RAG_LLM": profile["llm"],
               "RAG_MODEL_DIR": str(settings.model_dir)}
        results["uploads"] = uploads.measure(env, scoped, embedder, work)

    if "hostile" in phases:
        _phase("hostile uploads: statuses, the index unchanged, RSS, questions meanwhile")
        scoped = settings.replace(index_dir=work / "hostile-index")
        build_index(scoped, [BUNDLED_CORPUS], embedder)
        env = {"RAG_INDEX_DIR": str(scoped.index_dir), "RAG_LLM": profile["llm"],
               "RAG_MODEL_DIR": str(settings.model_dir)}
        results["hostile"] = hostile.measure(env, scoped.index_dir,
                                             questions[:HOSTILE_QUESTIONS], profile["hostile"])

    if "service" in phases:
        _phase("cold start and service under load")
        env = {"RAG_INDEX_DIR": str(settings.index_dir), "RAG_LLM": profile["llm"],
               "RAG_MODEL_DIR": str(settings.model_dir)}
        results["cold_start_first_answer_s"] = service.cold_start_first_answer(env, questions[0])
        # One request at a time (before continuous batching) and the other candidates for
        # RAG_PARALLEL, then the default in full.
        parallel = Settings.from_env().parallel
        results["service_by_parallel"] = {
            str(n): service.throughput(env | {"RAG_PARALLEL": str(n)}, questions,
                                       profile["levels"])
            for n in sorted({1, 2, 4} - {parallel})}
        results["service"] = service.measure(env | {"RAG_PARALLEL": str(parallel)}, questions,
                                             profile["levels"], profile["total_questions"])
        results["service"]["parallel"] = parallel
        _count_changed_answers(results)


def _count_changed_answers(results: dict[str, Any]) -> None:
    """Beside each level: its answers that differ from those one request at a time
    (RAG_PARALLEL=1) gave to the same questions. The run at RAG_PARALLEL=1 is the full
    service run when 1 is the default, else one of the candidates."""
    runs = {n: run["throughput"] for n, run in results["service_by_parallel"].items()}
    runs[str(results["service"]["parallel"])] = results["service"]["throughput"]
    for levels in runs.values():
        for level, reference in zip(levels, runs["1"], strict=True):
            level["answers_changed"], level["answers_compared"] = service.differing(
                level, reference["answers"])


def _naive(text: str, embedder: Embedder, settings: Settings,
           questions: list[str]) -> dict[str, Any]:
    """The naive baseline over ``text``, its model closed before the next phase loads one."""
    naive = NaivePipeline(text, embedder, settings)
    try:
        return latency.measure_naive(naive, questions)
    finally:
        naive.llm.close()


def _layout(settings: Settings, embedder: Embedder, items: list[GoldItem],
            floor: bool) -> dict[str, Any]:
    """One prompt layout's latency and answers; with stored passages and none stored yet, a first
    pass over the questions computes their states (measured apart as the cold pass)."""
    pipeline = load_pipeline(settings, embedder)
    warm_up(pipeline)
    cold: dict[str, Any] = {}
    states = pipeline.drafter.prompt.states
    if states is not None and not states.size_bytes():
        first = latency.measure(pipeline, settings, items, floor=False)
        cold = {"cold_pipeline_p50_s": first["pipeline_p50_s"],
                "states_computed": states.stats.computed,
                "store_bytes": states.size_bytes(),
                "store_bytes_per_token": states.size_bytes() / max(states.stats.stored_tokens, 1)}
    result = latency.measure(pipeline, settings, items, floor) | cold
    pipeline.drafter.engine.close()
    return result


def _subcorpus(work: Path, chunks: int) -> Path:
    folder = work / "engine-corpus"
    build_speed.generate_corpus(folder, chunks, seed=11)
    return folder


def _vectors(index_dir: Path) -> np.ndarray:
    dense = faiss.read_index(str(index_dir.resolve() / "dense.faiss"))
    return np.ascontiguousarray(dense.reconstruct_n(0, dense.ntotal), dtype=np.float32)


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "memory_gb": _memory_gb()}


def _memory_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        return round(int(meminfo.readline().split()[1]) / 1024 / 1024, 1)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _phase(name: str) -> None:
    print(f"[bench {_now()}] {name}…", flush=True)


if __name__ == "__main__":
    main()
