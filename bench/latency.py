"""Answer latency: the pipeline against the naive reference and against the llama.cpp floor.

The floor is the llama.cpp work alone: every read the pipeline made for a question (prompt
segments, answer steps, verification; ``Engine.extend``, recorded by wrapping it), replayed on
the same KV cache in the same order, so prefix caching helps the floor exactly as much as it
helped the pipeline. Pipeline overhead = total - floor. Time to first token is measured from the
end of retrieval to the first answer delta. Decode steps are the calls that read one token;
batched segments are counted apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bench.naive import NaivePipeline
from eval.metrics import percentile
from rag.guard import NO_GUARD, Guard
from rag.llm.engine import Engine, KvSequence, Logits
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.types import Question

Call = tuple[KvSequence, int, list[int], tuple[int, ...]]


@contextmanager
def recording(engine: Engine) -> Iterator[list[Call]]:
    """Record every read the engine makes: (sequence, position, tokens, outputs)."""
    calls: list[Call] = []

    def extend(seq: KvSequence, tokens: Sequence[int], outputs: Sequence[int] = (-1,),
               guard: Guard = NO_GUARD) -> list[Logits]:
        calls.append((seq, len(seq.tokens), list(tokens), tuple(outputs)))
        return Engine.extend(engine, seq, tokens, outputs, guard)

    engine.extend = extend  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del engine.extend


def replay(engine: Engine, calls: list[Call]) -> float:
    started = time.perf_counter()
    for seq, start, tokens, outputs in calls:
        engine.truncate(seq, start)
        engine.extend(seq, tokens, outputs)
    return time.perf_counter() - started


def measure(pipeline: Pipeline, settings: Settings, questions: list[str]) -> dict[str, Any]:
    totals, ttfts, per_question_calls = [], [], []
    answer_tokens, steps, calls_per_answer = [], [], []
    for question in questions:
        marks: dict[str, float] = {}

        def on_passages(_: object, marks: dict[str, float] = marks) -> None:
            marks["retrieved"] = time.perf_counter()

        def on_delta(_: str, marks: dict[str, float] = marks) -> None:
            marks.setdefault("first_delta", time.perf_counter())

        engine = pipeline.drafter.engine
        with recording(engine) as calls:
            started = time.perf_counter()
            answer = pipeline.ask(Question.checked(question, settings), on_passages=on_passages,
                                  on_delta=on_delta)
            totals.append(time.perf_counter() - started)
        per_question_calls.append(calls)
        if "first_delta" in marks:
            ttfts.append(marks["first_delta"] - marks["retrieved"])
        if answer.trace is not None and answer.trace.draft:
            answer_tokens.append(answer.trace.answer_tokens)
            steps.append(answer.trace.decode_steps)
            calls_per_answer.append(len(calls))

    floors = [replay(pipeline.drafter.engine, calls) for calls in per_question_calls]
    overheads = [t - f for t, f in zip(totals, floors, strict=True)]
    return {
        "questions": len(questions),
        "model": pipeline.model_name,
        "prompt_mode": pipeline.drafter.prompt.mode,
        "pipeline_p50_s": percentile(totals, 50),
        "pipeline_p95_s": percentile(totals, 95),
        "floor_p50_s": percentile(floors, 50),
        "overhead_p50_s": percentile(overheads, 50),
        "ratio_overhead_to_floor_p50": percentile(overheads, 50) / percentile(floors, 50),
        "ttft_after_retrieval_p50_s": percentile(ttfts, 50),
        "ttft_after_retrieval_p95_s": percentile(ttfts, 95),
        "answered": len(answer_tokens),
        "answer_tokens_p50": percentile(answer_tokens, 50),
        "decode_steps_p50": percentile(steps, 50),
        "decode_calls_p50": percentile(calls_per_answer, 50),
    }


def measure_naive(naive: NaivePipeline, questions: list[str]) -> dict[str, Any]:
    times = [naive.ask(q).seconds for q in questions]
    return {"naive_p50_s": percentile(times, 50), "naive_p95_s": percentile(times, 95)}


def ratios(result: dict[str, Any], naive: dict[str, Any]) -> dict[str, Any]:
    return {
        "ratio_pipeline_to_naive_p50": result["pipeline_p50_s"] / naive["naive_p50_s"],
        "ratio_pipeline_to_naive_p95": result["pipeline_p95_s"] / naive["naive_p95_s"],
        "targets": {"ratio_pipeline_to_naive_p50": "<= 0.4 (stretch 0.3)",
                    "ratio_pipeline_to_naive_p95": "<= 0.6",
                    "ttft_after_retrieval_p50_s": "<= 0.5 (corpus layout)",
                    "decode_steps_p50": "<= answer_tokens_p50 + 3"},
    }
