"""The benchmark table printed at the end of ``python -m bench`` (markdown, pasteable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def table(results: dict[str, Any]) -> str:
    lines = ["| measure | value | reference | ratio | target |", "|---|---|---|---|---|"]
    sections = [("llama_builds", _llama_builds), ("answer_latency", _latency),
                ("answer_latency_documents", _documents),
                ("index_build", _index_build), ("growth", _growth),
                ("retrieval_scale", _retrieval),
                ("uploads", _uploads), ("hostile", _hostile),
                ("service", _service)]
    for key, section in sections:
        if key in results:
            section(results, lines.append)
    return "\n".join(lines)


Add = Callable[[str], None]


def _llama_builds(results: dict[str, Any], add: Add) -> None:
    bench = results["llama_builds"]
    native = bench["builds"].get("native")
    for label, stats in bench["builds"].items():
        name = f"{bench['installed_variant']} (installed)" if label == "installed" else label
        for kind, unit in (("prefill", bench["prefill_tokens"]), ("decode",
                                                                  bench["decode_tokens"])):
            ratio = f"{stats[f'{kind}_vs_native']:.3f}" if native else ""
            ref = f"native {native[f'{kind}_tokens_per_s']:.1f} tokens/s" if native else ""
            add(f"| llama.cpp {name} build, {kind} ({unit} tokens, {bench['model']}) | "
                f"{stats[f'{kind}_tokens_per_s']:.1f} tokens/s | {ref} | {ratio} | ≥ 0.95 |")


def _latency(results: dict[str, Any], add: Add) -> None:
    naive = results["answer_latency"]["naive"]
    modes = results["answer_latency"]["modes"]
    for mode, lat in modes.items():
        add(f"| answer p50, {mode} layout ({lat['model']}, {lat['questions']} q) | "
            f"{lat['pipeline_p50_s']:.2f} s | naive {naive['naive_p50_s']:.2f} s | "
            f"{lat['ratio_pipeline_to_naive_p50']:.2f} | ≤ 0.5 |")
        add(f"| answer p95, {mode} layout | {lat['pipeline_p95_s']:.2f} s | naive "
            f"{naive['naive_p95_s']:.2f} s | {lat['ratio_pipeline_to_naive_p95']:.2f} | ≤ 0.6 |")
        if "floor_p50_s" in lat:
            add(f"| pipeline overhead p50, {mode} layout | {lat['overhead_p50_s']:.3f} s | "
                f"llama.cpp floor {lat['floor_p50_s']:.2f} s | "
                f"{lat['ratio_overhead_to_floor_p50']:.2f} | ≤ 0.10 |")
        add(f"| decode steps per answer p50, {mode} layout ({lat['answered']} answered) | "
            f"{lat['decode_steps_p50']:.0f} | answer tokens {lat['answer_tokens_p50']:.0f}; "
            f"llama_decode calls {lat['decode_calls_p50']:.0f} | | ≤ answer tokens + 3 |")
        if lat.get("verification_p50_s") is not None:
            add(f"| verification, {mode} layout: read for {lat['verified']} of "
                f"{lat['questions']} questions | {lat['verification_p50_s']:.2f} s p50 | | | |")
    _layouts("the article", modes, add)


def _layouts(corpus: str, modes: dict[str, dict[str, Any]], add: Add) -> None:
    """Per layout: quality, time to first token, tokens read per question and the stored
    passages' cost, beside the full read of the retrieval layout."""
    full = modes["retrieval"]
    for mode, lat in modes.items():
        same = sum(lat["answers"][q] == a for q, a in full["answers"].items())
        add(f"| {corpus}, {mode} layout: right, p50, TTFT p50 | {lat['right']} of "
            f"{lat['questions']} right ({same} answers as the full read); "
            f"{lat['pipeline_p50_s']:.2f} s; {lat['ttft_after_retrieval_p50_s']:.2f} s; "
            f"{lat['tokens_read_p50']:.0f} tokens read | "
            f"full read {full['right']} right, {full['pipeline_p50_s']:.2f} s | "
            f"{lat['pipeline_p50_s'] / full['pipeline_p50_s']:.2f} | TTFT ≤ 0.5 s |")
        if "store_bytes" in lat:
            add(f"| {corpus}, stored passages: {lat['states_computed']} computed on first use "
                f"(cold p50 {lat['cold_pipeline_p50_s']:.2f} s) | {lat['store_bytes'] / 1e6:.1f}"
                f" MB | {lat['store_bytes_per_token'] / 1e3:.1f} KB per token | | |")


def _documents(results: dict[str, Any], add: Add) -> None:
    documents = results["answer_latency_documents"]
    naive = documents["naive"]
    for mode, lat in documents["modes"].items():
        add(f"| {documents['corpus']}, answer p50, {mode} layout | {lat['pipeline_p50_s']:.2f} s"
            f" | naive {naive['naive_p50_s']:.2f} s | {lat['ratio_pipeline_to_naive_p50']:.2f} "
            "| ≤ 0.5 |")
    _layouts(documents["corpus"], documents["modes"], add)


def _index_build(results: dict[str, Any], add: Add) -> None:
    for build in results["index_build"]:
        add(f"| index build, {build['corpus']} ({build['chunks']} chunks) | "
            f"{build['build_chunks_per_s']:.0f} chunks/s | encode only "
            f"{build['encode_only_chunks_per_s']:.0f} chunks/s | "
            f"{build['ratio_build_to_encode']:.2f} | ≥ 0.9 |")
        add(f"| index build peak RSS, {build['corpus']} | {build['build_peak_rss_mb']:.0f} MB | "
            f"encode only {build['encode_peak_rss_mb']:.0f} MB | | |")


def _growth(results: dict[str, Any], add: Add) -> None:
    grow = results["growth"]["incremental"]
    add(f"| add 1 document ({grow['embedded']} chunks) to {grow['chunks_before']:,} chunks | "
        f"{grow['add_s']:.1f} s | full build {grow['full_build_s']:.1f} s | "
        f"{grow['ratio_add_to_full']:.3f} | |")
    engines = results["growth"]["engines"]
    local = engines["local"]
    for name, run in engines.items():
        add(f"| index build {name} ({run['chunks']:,} chunks) | {run['chunks_per_s']:.0f} "
            f"chunks/s, peak RSS {run['peak_rss_mb']:.0f} MB | one process "
            f"{local['chunks_per_s']:.0f} chunks/s | {run['ratio_to_local']:.2f} | |")


def _retrieval(results: dict[str, Any], add: Add) -> None:
    for size in results["retrieval_scale"]["sizes"]:
        add(f"| dense search p50, {size['vectors']:,} vectors | IVF{size['ivf_lists']} "
            f"{size['ivf_p50_ms']:.2f} ms, recall@10 {size['ivf_recall_at_10']:.3f} | exact "
            f"{size['flat_p50_ms']:.2f} ms | {size['ivf_p50_ms'] / size['flat_p50_ms']:.2f} | "
            "< 20 ms, ≥ 0.95 |")


def _uploads(results: dict[str, Any], add: Add) -> None:
    bench = results["uploads"]
    rebuild = (f"full rebuild {bench['full_rebuild_s']:.1f} s "
               f"({bench['full_rebuild_chunks']} chunks, not yet served)")
    for label, run in bench["uploads"].items():
        add(f"| upload {label} ({run['chunks']} chunks): accepted to indexed and served | "
            f"{run['indexed_and_served_s']:.2f} s | {rebuild} | "
            f"{run['indexed_and_served_s'] / bench['full_rebuild_s']:.2f} | |")
        add(f"| upload {label}: accepted to first answer ({'right' if run['right'] else 'WRONG'})"
            f" | {run['first_answer_s']:.2f} s | | | |")
        add(f"| upload {label}: accepted to served by the other replica (watch "
            f"{bench['watch_interval_s']} s) | {run['other_replica_serves_s']:.2f} s | | | |")


def _hostile(results: dict[str, Any], add: Add) -> None:
    bench = results["hostile"]
    idle = bench["idle_p50_s"]
    for label, run in bench["cases"].items():
        statuses = ", ".join(f"{n}× {s}" for s, n in run["statuses"].items())
        add(f"| hostile {label}: {statuses}; 5xx {run['server_errors']}, index unchanged "
            f"{run['index_unchanged']}, RSS peak {run['rss_peak_mb']:.0f} MB | question p50 "
            f"{run['question_p50_s']:.2f} s | idle p50 {idle:.2f} s | "
            f"{run['question_p50_s'] / idle:.2f} | ≤ 2, RSS ≤ 3584 MB |")


def _level(level: dict[str, Any]) -> str:
    ttft = level.get("ttft_p50_s")
    return (f"{level['requests_per_s']:.2f} req/s, p50 {level['p50_s']:.1f} s, p95 "
            f"{level['p95_s']:.1f} s" + (f", TTFT {ttft:.1f} s" if ttft is not None else "")
            + (f", RSS {level['rss_mb']:.0f} MB" if "rss_mb" in level else "")
            + f", errors {level['errors']}, 503 {level['rejected_503']}, "
            f"504 {level.get('timed_out_504', '?')}, out of time mid-stream "
            f"{level.get('no_answer', '?')}"
            + (f", answers changed {level['answers_changed']} of {level['answers_compared']}"
               if "answers_changed" in level else ""))


def _service(results: dict[str, Any], add: Add) -> None:
    add(f"| cold start to first answer (`rag ask`) | {results['cold_start_first_answer_s']:.1f} s"
        " | | | |")
    svc = results["service"]
    add(f"| cold start to /readyz (`rag serve`) | {svc['cold_start_to_ready_s']:.1f} s | | | |")
    by_parallel = results.get("service_by_parallel", {})
    for n, run in by_parallel.items():
        for level in run["throughput"]:
            add(f"| service, {level['clients']} clients ({level['requests']} requests), "
                f"RAG_PARALLEL={n} | {_level(level)} | | | |")
    before = {level["clients"]: level for level in by_parallel.get("1", {}).get("throughput", [])}
    single = svc["throughput"][0]
    for level in svc["throughput"]:
        ref = before.get(level["clients"])
        add(f"| service, {level['clients']} clients ({level['requests']} requests), "
            f"RAG_PARALLEL={svc.get('parallel', 1)} | {_level(level)} | "
            f"{'one at a time: ' + _level(ref) if ref else ''} | "
            f"{level['requests_per_s'] / single['requests_per_s']:.2f} × 1-client req/s, p50 "
            f"{level['p50_s'] / single['p50_s']:.2f} × | ≥ 2.5 × req/s at 4 and 16; p50 ≤ 1.6 × "
            "at 4; 0 errors |")
    stream = svc["stream"]
    add(f"| SSE /v1/ask/stream ({stream['questions']} q): first byte p50 | "
        f"{1000 * stream['ttfb_p50_s']:.0f} ms | first delta {stream['first_delta_p50_s']:.2f} s, "
        f"whole answer {stream['total_p50_s']:.2f} s | | |")
    mem = svc["memory"]
    add(f"| service RSS loaded → warm → after {mem['after_questions']} questions | "
        f"{mem['after_load_rss_mb']:.0f} → {mem['warm_rss_mb']:.0f} → "
        f"{mem['after_questions_rss_mb']:.0f} MB | peak "
        f"{mem['peak_rss_mb']:.0f} MB | growth {mem['growth_mb']:+.0f} MB | no growth |")
