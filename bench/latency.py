"""Answer latency: the pipeline against the naive reference and against the llama.cpp floor.

The floor is the llama.cpp work alone: every read the pipeline made for a question (prompt
segments, answer steps, verification; ``Engine.extend``) and every stored passage it appended
(``Engine.insert_block``), recorded by wrapping them, replayed on the same KV cache in the same
order, so prefix caching helps the floor exactly as much as it helped the pipeline. Pipeline
overhead = total - floor. Time to first token is measured from the end of retrieval to the
first answer delta. Decode steps are the calls that read one token; batched segments are
counted apart.
"""

from __future__ import annotations

import time
from typing import Any

from bench.naive import NaivePipeline
from eval.gold import GoldItem
from eval.metrics import is_right, percentile
from rag.llm.engine import Engine
from rag.llm.recording import Call, recording
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.types import Question


def replay(engine: Engine, calls: list[Call]) -> dict[str, float]:
    """The calls again, in order: seconds spent on each sequence's reads."""
    spent: dict[str, float] = {}
    for call in calls:
        started = time.perf_counter()
        engine.truncate(call.seq, call.start)
        if call.fork_to:
            engine.fork(call.seq, call.fork_to)
        elif call.side:
            for seq, start, _, _ in call.side:
                engine.truncate(seq, start)
            engine.extend_each([(seq, tokens, outputs) for seq, _, tokens, outputs in call.side])
        elif call.block is None:
            engine.extend(call.seq, call.tokens, call.outputs)
        else:
            engine.insert_block(call.seq, call.block, call.tokens, call.origin, call.lead,
                                call.fresh)
        spent[call.seq.name] = spent.get(call.seq.name, 0.0) + time.perf_counter() - started
    return spent


def measure(pipeline: Pipeline, settings: Settings, items: list[GoldItem],
            floor: bool = True) -> dict[str, Any]:
    """Latency of each question, and whether its answer was right (strictly: a gold answer in it
    and not padded, or a refusal where the documents do not say); with ``floor``, the
    llama.cpp floor replayed after them."""
    totals, ttfts, per_question_calls = [], [], []
    answer_tokens, steps, calls_per_answer, tokens_read = [], [], [], []
    answers: dict[str, str | None] = {}
    for item in items:
        question = item.question
        marks: dict[str, float] = {}

        def on_passages(_: object, marks: dict[str, float] = marks) -> None:
            marks["retrieved"] = time.perf_counter()

        def on_delta(_: str, marks: dict[str, float] = marks) -> None:
            marks.setdefault("first_delta", time.perf_counter())

        engine = pipeline.drafter.engine
        read_before = engine.stats.tokens
        with recording(engine) as calls:
            started = time.perf_counter()
            answer = pipeline.ask(Question.checked(question, settings), on_passages=on_passages,
                                  on_delta=on_delta)
            totals.append(time.perf_counter() - started)
        tokens_read.append(engine.stats.tokens - read_before)
        per_question_calls.append(calls)
        answers[item.id] = None if answer.refused else answer.answer
        if "first_delta" in marks:
            ttfts.append(marks["first_delta"] - marks["retrieved"])
        if answer.trace is not None and answer.trace.draft:
            answer_tokens.append(answer.trace.answer_tokens)
            steps.append(answer.trace.decode_steps)
            calls_per_answer.append(len(calls))

    result = {
        "questions": len(items),
        "right": sum(_right(item, answers[item.id]) for item in items),
        "answers": answers,
        "model": pipeline.model_name,
        "prompt_mode": pipeline.drafter.prompt.mode,
        "pipeline_p50_s": percentile(totals, 50),
        "pipeline_p95_s": percentile(totals, 95),
        "ttft_after_retrieval_p50_s": percentile(ttfts, 50),
        "ttft_after_retrieval_p95_s": percentile(ttfts, 95),
        "tokens_read_p50": percentile(tokens_read, 50),
        "answered": len(answer_tokens),
        "answer_tokens_p50": percentile(answer_tokens, 50),
        "decode_steps_p50": percentile(steps, 50),
        "decode_calls_p50": percentile(calls_per_answer, 50),
    }
    return result | (_floor(pipeline.drafter.engine, per_question_calls, totals) if floor else {})


def _floor(engine: Engine, per_question_calls: list[list[Call]],
           totals: list[float]) -> dict[str, Any]:
    """Each question's calls replayed: the llama.cpp floor, the pipeline's overhead above it and
    the verifier's share."""
    spent = [replay(engine, calls) for calls in per_question_calls]
    floors = [sum(s.values()) for s in spent]
    verifications = [s["verify"] for s in spent if "verify" in s]
    overheads = [t - f for t, f in zip(totals, floors, strict=True)]
    return {
        "floor_p50_s": percentile(floors, 50),
        "overhead_p50_s": percentile(overheads, 50),
        "ratio_overhead_to_floor_p50": percentile(overheads, 50) / percentile(floors, 50),
        "verified": len(verifications),
        "verification_p50_s": percentile(verifications, 50) if verifications else None,
    }


def _right(item: GoldItem, answer: str | None) -> bool:
    if not item.answerable:
        return answer is None
    return answer is not None and is_right(answer, item.answers)


def measure_naive(naive: NaivePipeline, questions: list[str]) -> dict[str, Any]:
    times = [naive.ask(q).seconds for q in questions]
    return {"naive_p50_s": percentile(times, 50), "naive_p95_s": percentile(times, 95)}


def ratios(result: dict[str, Any], naive: dict[str, Any]) -> dict[str, Any]:
    return {
        "ratio_pipeline_to_naive_p50": result["pipeline_p50_s"] / naive["naive_p50_s"],
        "ratio_pipeline_to_naive_p95": result["pipeline_p95_s"] / naive["naive_p95_s"],
        "targets": {"ratio_pipeline_to_naive_p50": "<= 0.5",
                    "ratio_pipeline_to_naive_p95": "<= 0.6",
                    "ttft_after_retrieval_p50_s": "<= 0.5",
                    "decode_steps_p50": "<= answer_tokens_p50 + 3"},
    }
