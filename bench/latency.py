"""Answer latency: the pipeline against the naive reference and against the llama.cpp floor.

The floor is the llama.cpp work alone: every completion the pipeline made (answer and verifier),
replayed with the same arguments on the same contexts in the same order, so prefix caching
helps the floor exactly as much as it helped the pipeline. Pipeline overhead = total - floor.
Time to first token is measured from the end of retrieval to the first answer delta.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.naive import NaivePipeline
from eval.metrics import percentile
from rag.pipeline import Pipeline


@contextmanager
def recording(pipeline: Pipeline) -> Iterator[list[tuple[Any, dict[str, Any]]]]:
    """Record every llama.cpp completion call the pipeline makes (context, arguments)."""
    calls: list[tuple[Any, dict[str, Any]]] = []
    llms = [pipeline.generator.model.llm]
    if pipeline.verifier is not None:
        llms.append(pipeline.verifier.model.llm)
    originals = {id(llm): llm.create_chat_completion for llm in llms}

    def recorder(llm: Any) -> Any:
        def call(**kwargs: Any) -> Any:
            calls.append((llm, kwargs))
            return originals[id(llm)](**kwargs)

        return call

    for llm in llms:
        llm.create_chat_completion = recorder(llm)  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        for llm in llms:
            llm.create_chat_completion = originals[id(llm)]  # type: ignore[method-assign]


def replay(calls: list[tuple[Any, dict[str, Any]]]) -> float:
    started = time.perf_counter()
    for llm, kwargs in calls:
        result = llm.create_chat_completion(**kwargs)
        if kwargs.get("stream"):
            for _ in result:
                pass
    return time.perf_counter() - started


def reset(pipeline: Pipeline) -> None:
    """Forget the KV caches so every pass starts from the same state."""
    pipeline.generator.model.llm.reset()  # type: ignore[no-untyped-call]
    if pipeline.verifier is not None:
        pipeline.verifier.model.llm.reset()  # type: ignore[no-untyped-call]


def measure(pipeline: Pipeline, naive: NaivePipeline, questions: list[str]) -> dict[str, Any]:
    reset(pipeline)
    totals, ttfts, per_question_calls = [], [], []
    for question in questions:
        marks: dict[str, float] = {}

        def on_passages(_: object, marks: dict[str, float] = marks) -> None:
            marks["retrieved"] = time.perf_counter()

        def on_delta(_: str, marks: dict[str, float] = marks) -> None:
            marks.setdefault("first_delta", time.perf_counter())

        with recording(pipeline) as calls:
            started = time.perf_counter()
            pipeline.ask(question, on_passages=on_passages, on_delta=on_delta)
            totals.append(time.perf_counter() - started)
        per_question_calls.append(calls)
        if "first_delta" in marks:
            ttfts.append(marks["first_delta"] - marks["retrieved"])

    reset(pipeline)
    floors = [replay(calls) for calls in per_question_calls]
    reset(pipeline)
    naive_times = [naive.ask(q).seconds for q in questions]

    overheads = [t - f for t, f in zip(totals, floors, strict=True)]
    p50 = percentile(totals, 50)
    naive_p50 = percentile(naive_times, 50)
    floor_p50 = percentile(floors, 50)
    return {
        "questions": len(questions),
        "pipeline_p50_s": p50,
        "pipeline_p95_s": percentile(totals, 95),
        "naive_p50_s": naive_p50,
        "naive_p95_s": percentile(naive_times, 95),
        "floor_p50_s": floor_p50,
        "overhead_p50_s": percentile(overheads, 50),
        "ratio_pipeline_to_naive_p50": p50 / naive_p50,
        "ratio_overhead_to_floor_p50": percentile(overheads, 50) / floor_p50,
        "ttft_after_retrieval_p50_s": percentile(ttfts, 50),
        "ttft_after_retrieval_p95_s": percentile(ttfts, 95),
        "targets": {"ratio_pipeline_to_naive_p50": "<= 0.5",
                    "ratio_overhead_to_floor_p50": "<= 0.10",
                    "ttft_after_retrieval_p50_s": "<= 0.5"},
    }
