"""Index build throughput against ``SentenceTransformer.encode`` alone, and peak memory.

Each measurement runs in its own process (``python -m bench.build_speed ...``) so its peak RSS is
its own. The generated corpus is the bundled article's sentences shuffled into many documents:
real English text, any size, no download.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rag.settings import BUNDLED_CORPUS, Settings

SENTENCES_PER_DOC = 60


def generate_corpus(folder: Path, chunks_wanted: int, seed: int = 7) -> None:
    """Documents of shuffled article sentences: about one 80-token chunk per 1.9 sentences."""
    from index_build.chunking import sentence_spans

    text = BUNDLED_CORPUS.read_text(encoding="utf-8")
    sentences = [text[a:b] for a, b in sentence_spans(text)]
    rng = random.Random(seed)
    documents = max(1, round(chunks_wanted * 1.9 / SENTENCES_PER_DOC))
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(documents):
        picked = [rng.choice(sentences) for _ in range(SENTENCES_PER_DOC)]
        paragraphs = [" ".join(picked[i : i + 3]) for i in range(0, len(picked), 3)]
        (folder / f"doc{n:05d}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(docs: Path, index_dir: Path, engine: str = "local") -> dict[str, Any]:
    from index_build.build import build_index
    from rag.retrieval.embedder import Embedder

    settings = Settings.from_env(index_dir=index_dir)  # RAG_N_THREADS sets the Ray workers
    embedder = Embedder(settings.threads) if engine == "local" else None
    started = time.perf_counter()
    result = build_index(settings, [docs], embedder, engine=engine)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    return {"chunks": result.manifest.chunk_count, "seconds": seconds, "peak_rss_mb": _peak_mb()}


def _add(document: Path, index_dir: Path) -> dict[str, Any]:
    """Add one document to an existing index: only its chunks are embedded."""
    from index_build.build import add_documents

    settings = Settings.from_env({}, index_dir=index_dir)
    started = time.perf_counter()
    result = add_documents(settings, [document])
    seconds = time.perf_counter() - started
    return {"chunks": result.manifest.chunk_count, "embedded": result.manifest.embedded_chunks,
            "seconds": seconds, "peak_rss_mb": _peak_mb()}


def _encode_only(docs: Path) -> dict[str, Any]:
    from index_build.chunking import chunk_documents
    from index_build.reading import read_documents
    from rag.retrieval.embedder import Embedder

    settings = Settings()
    chunks = chunk_documents(read_documents([docs]), settings.chunk_tokens, settings.chunk_overlap)
    texts = [c.text for c in chunks]
    embedder = Embedder(settings.threads)
    started = time.perf_counter()
    embedder.encode(texts)
    seconds = time.perf_counter() - started
    return {"chunks": len(texts), "seconds": seconds, "peak_rss_mb": _peak_mb()}


def run_isolated(mode: str, docs: Path, index_dir: Path,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.build_speed", mode, str(docs), str(index_dir)],
        capture_output=True, text=True, check=True, env={**os.environ, **(env or {})},
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def measure(label: str, docs: Path, keep: Path | None = None) -> dict[str, Any]:
    """Build ``docs`` (into ``keep`` if given, else a temporary folder) and encode them alone."""
    with tempfile.TemporaryDirectory() as folder:
        build = run_isolated("build", docs, keep or Path(folder) / "index")
    encode = run_isolated("encode", docs, Path("unused"))
    build_rate = build["chunks"] / build["seconds"]
    encode_rate = encode["chunks"] / encode["seconds"]
    return {
        "corpus": label,
        "chunks": build["chunks"],
        "build_s": build["seconds"],
        "build_chunks_per_s": build_rate,
        "encode_only_chunks_per_s": encode_rate,
        "ratio_build_to_encode": build_rate / encode_rate,
        "build_peak_rss_mb": build["peak_rss_mb"],
        "encode_peak_rss_mb": encode["peak_rss_mb"],
        "target": {"ratio_build_to_encode": ">= 0.9"},
    }


def measure_growth(docs: Path, index_dir: Path, full_build_s: float) -> dict[str, Any]:
    """One document added to the index of ``docs`` (built in this run in ``full_build_s``)."""
    extra = index_dir.parent / "one-more.txt"
    extra.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8"), encoding="utf-8")
    added = run_isolated("add", extra, index_dir)
    return {"chunks_before": added["chunks"] - added["embedded"], "embedded": added["embedded"],
            "add_s": added["seconds"], "full_build_s": full_build_s,
            "ratio_add_to_full": added["seconds"] / full_build_s}


def measure_engines(docs: Path, scratch: Path) -> dict[str, Any]:
    """The same corpus built in one process and on a local Ray instance with 1 and 2 workers."""
    runs = {"local": run_isolated("build", docs, scratch / "local")}
    for workers in (1, 2):
        runs[f"ray-{workers}"] = run_isolated("ray", docs, scratch / f"ray-{workers}",
                                              env={"RAG_N_THREADS": str(workers)})
    local_rate = runs["local"]["chunks"] / runs["local"]["seconds"]
    return {name: {"chunks": run["chunks"], "seconds": run["seconds"],
                   "chunks_per_s": run["chunks"] / run["seconds"],
                   "ratio_to_local": run["chunks"] / run["seconds"] / local_rate,
                   "peak_rss_mb": run["peak_rss_mb"]}
            for name, run in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["build", "ray", "encode", "add"])
    parser.add_argument("docs", type=Path)
    parser.add_argument("index_dir", type=Path)
    args = parser.parse_args()
    if args.mode == "encode":
        result = _encode_only(args.docs)
    elif args.mode == "add":
        result = _add(args.docs, args.index_dir)
    else:
        result = _build(args.docs, args.index_dir, "ray" if args.mode == "ray" else "local")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
