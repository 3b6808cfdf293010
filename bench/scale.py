"""Retrieval at scale: exact (flat) against approximate (IVF) dense search, 10^4 to 10^6 vectors.

Corpus vectors are real MiniLM embeddings of generated chunks, multiplied by small random
perturbations to reach the larger sizes (so neighbourhoods keep the structure of real text
embeddings instead of the uniform spread of random vectors). Queries are real embeddings of the
gold questions. Recall@10 is measured against exact search on the same vectors; latency is the
p50 of single-query searches on this machine's threads.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from eval.metrics import percentile
from index_build.writing import dense_index, ivf_lists
from rag.retrieval.search import IVF_PROBES

Vectors = npt.NDArray[np.float32]
K = 10
NOISE = 0.2


def grow(base: Vectors, count: int, seed: int) -> Vectors:
    """``count`` unit vectors: the base vectors, then blends of two random base vectors plus noise.

    Blends fill the space between real embeddings the way a larger corpus would; plain noisy
    copies would make tight clumps of near-duplicates that no real corpus has.
    """
    rng = np.random.default_rng(seed)
    first = base[rng.integers(0, len(base), size=count)]
    second = base[rng.integers(0, len(base), size=count)]
    mix = rng.uniform(0.0, 1.0, size=(count, 1)).astype(np.float32)
    noise = rng.standard_normal((count, base.shape[1])).astype(np.float32)
    vectors = mix * first + (1 - mix) * second + NOISE * noise / np.float32(base.shape[1] ** 0.5)
    vectors[: min(count, len(base))] = base[: min(count, len(base))]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _latencies(index: Any, queries: Vectors) -> tuple[list[float], npt.NDArray[np.float32]]:
    """Per-query search times and the scores of the rows found."""
    times, scores = [], []
    for query in queries:
        started = time.perf_counter()
        found, _ = index.search(query[None, :], K)
        times.append(time.perf_counter() - started)
        scores.append(found[0])
    return times, np.array(scores)


def recall_at_k(approx: npt.NDArray[np.float32], exact: npt.NDArray[np.float32]) -> float:
    """Share of approximate results scoring at least the exact k-th best.

    Tie-tolerant: among near-duplicate vectors which of two equal scores is "the" neighbour is
    arbitrary, and an id-based recall would count that as a miss.
    """
    kth = exact[:, K - 1 : K] - 1e-5
    return float(np.mean(approx >= kth))


def measure_size(vectors: Vectors, queries: Vectors) -> dict[str, Any]:
    """Exact search against the approximate index the index builder would write."""
    flat = dense_index(vectors, "flat")
    flat_times, exact = _latencies(flat, queries)
    started = time.perf_counter()
    approximate = dense_index(vectors, f"ivf{ivf_lists(len(vectors))}")
    build_s = time.perf_counter() - started
    approximate.nprobe = IVF_PROBES
    ann_times, approx = _latencies(approximate, queries)
    return {
        "vectors": len(vectors),
        "flat_p50_ms": 1000 * percentile(flat_times, 50),
        "flat_p95_ms": 1000 * percentile(flat_times, 95),
        "ivf_lists": ivf_lists(len(vectors)),
        "ivf_p50_ms": 1000 * percentile(ann_times, 50),
        "ivf_p95_ms": 1000 * percentile(ann_times, 95),
        "ivf_recall_at_10": recall_at_k(approx, exact),
        "ivf_build_s": build_s,
    }


def measure(base: Vectors, queries: Vectors, sizes: list[int]) -> dict[str, Any]:
    rows = [measure_size(grow(base, size, seed=size), queries) for size in sizes]
    return {
        "sizes": rows,
        "flat_20ms_at_vectors": _where_flat_reaches(rows, 20.0),
        "ivf": {"lists": "2^round(log2(sqrt(n)))", "probes": IVF_PROBES},
        "targets": {"p50_ms": "< 20", "recall_at_10": ">= 0.95"},
    }


def _where_flat_reaches(rows: list[dict[str, Any]], ms: float) -> int | None:
    """Exact search cost is linear in n: extrapolate from the largest size measured."""
    last = rows[-1]
    return int(last["vectors"] * ms / last["flat_p50_ms"]) if last["flat_p50_ms"] else None


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["sizes"]
    sizes = [r["vectors"] for r in rows]
    figure, (latency, recall) = plt.subplots(1, 2, figsize=(10, 4))
    latency.plot(sizes, [r["flat_p50_ms"] for r in rows], "o-", label="exact (flat)")
    latency.plot(sizes, [r["ivf_p50_ms"] for r in rows], "s-", label=f"IVF, {IVF_PROBES} probes")
    latency.axhline(20, color="grey", linestyle="--", linewidth=1, label="20 ms target")
    latency.set(xscale="log", yscale="log", xlabel="vectors (384-d)",
                ylabel="p50 query latency (ms)", title="Dense search latency")
    latency.legend()
    recall.plot(sizes, [r["ivf_recall_at_10"] for r in rows], "s-", color="C1", label="IVF")
    recall.axhline(0.95, color="grey", linestyle="--", linewidth=1, label="0.95 target")
    recall.set(xscale="log", ylim=(0.8, 1.01), xlabel="vectors (384-d)",
               ylabel="recall@10 vs exact", title="IVF recall")
    recall.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
