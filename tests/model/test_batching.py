"""Continuous batching on the real small model: requests answered at once share decode steps and
get what they get alone but for rounding; a cancelled one frees its sequences while the other
finishes; one that arrives mid-generation starts within one prefill slice."""

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from rag.errors import CancelledError
from rag.factory import for_slots, load_pipeline, warm_up
from rag.guard import NO_GUARD, Guard
from rag.llm.engine import Engine, KvSequence
from rag.pipeline import Pipeline
from rag.retrieval.embedder import Embedder
from rag.retrieval.store import StoredIndex
from rag.settings import Settings
from rag.types import Answer
from tests.conftest import ask

pytestmark = pytest.mark.llm
SLICE = 64
# The most a logit may move when its step is batched with another request's. Measured: none
# on the machine this was first run on; up to 0.74 on an AVX2 AMD EPYC (2026-12-01), where a
# CI run saw a batched step turn one token of 24 (the last digit of a year).
ROUNDING = 1.0
# Questions the small model answers right (tests/service/test_load.py asks them 200 times), and a
# word of each right answer.
QUESTIONS = {"Who is Japan's foreign minister quoted in the article?": "Motegi",
             "Which news agency quoted Kim You-geun?": "Yonhap"}


@pytest.fixture(scope="module")
def slots(settings: Settings, embedder: Embedder, article_index: StoredIndex
          ) -> Iterator[list[Pipeline]]:
    pipeline = load_pipeline(settings.replace(prefill_slice=SLICE), embedder, slots=2)
    warm_up(pipeline)
    yield for_slots(pipeline, 2)
    pipeline.drafter.engine.close()


Run = tuple[list[int], list[np.ndarray]]  # greedy tokens, and the logits each was chosen from


def greedy(engine: Engine, seq: KvSequence, prompt: list[int], count: int,
           guard: Guard = NO_GUARD) -> Run:
    """``count`` greedy tokens after ``prompt``, one read each (as the drafter decodes)."""
    logits = engine.extend(seq, prompt, guard=guard)[0]
    tokens: list[int] = []
    seen: list[np.ndarray] = []
    for _ in range(count):
        seen.append(np.asarray(logits, dtype=np.float32).copy())
        tokens.append(int(np.argmax(logits)))
        logits = engine.extend(seq, tokens[-1:], guard=guard)[0]
    return tokens, seen


def same_but_for_rounding(shared: Run, alone: Run) -> None:
    """A step in a batch may round differently from the same step alone (other matrix shapes
    take other kernels on some CPUs), never more: up to the first token they differ in, every
    step's logits agree to within ``ROUNDING``, so they can differ only where the two best tokens
    were that close; after it the texts differ and nothing more is compared."""
    (tokens, logits), (expected, expected_logits) = shared, alone
    for step, (token, wanted) in enumerate(zip(tokens, expected, strict=True)):
        drift = float(np.abs(logits[step] - expected_logits[step]).max())
        assert drift < ROUNDING, (step, drift)
        if token != wanted:
            return


def side_by_side(*jobs: object) -> list[object]:
    """Run the callables at once in threads; their results (or exceptions) in order."""
    results: list[object] = [None] * len(jobs)

    def run(i: int, job: object) -> None:
        try:
            results[i] = job()  # type: ignore[operator]
        except BaseException as exc:  # the caller checks what each one raised
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return results


def test_two_requests_at_once_get_what_they_get_alone_but_for_rounding(
    slots: list[Pipeline]
) -> None:
    engine = slots[0].drafter.engine
    assert engine.scheduler is not None
    prompts = [engine.tokenize(engine.render([{"role": "user", "content": q}]))
               for q in QUESTIONS]
    seqs = [slot.resolver.seq for slot in slots]  # free at this point: nothing to follow up
    keep = [len(seq.tokens) for seq in seqs]

    def run(i: int) -> Run:
        tokens = greedy(engine, seqs[i], prompts[i], 24)
        engine.truncate(seqs[i], keep[i])
        return tokens

    alone = [run(0), run(1)]
    shared_before = engine.scheduler.stats.shared_steps
    together = side_by_side(lambda: run(0), lambda: run(1))
    assert engine.scheduler.stats.shared_steps - shared_before >= 12  # they did share steps
    for shared, expected in zip(together, alone, strict=True):
        assert not isinstance(shared, BaseException), shared
        same_but_for_rounding(shared, expected)  # type: ignore[arg-type]

    # Whole questions on both slots at once: each answered right, from its own sequences.
    at_once = side_by_side(*(lambda s=slot, q=q: ask(s, q)
                             for slot, q in zip(slots, QUESTIONS, strict=True)))
    for answer, word in zip(at_once, QUESTIONS.values(), strict=True):
        assert isinstance(answer, Answer), answer
        assert not answer.refused and word in answer.answer, (answer.refusal_reason,
                                                              answer.trace)
        assert answer.citations, answer


def test_a_cancelled_request_frees_its_sequences_while_the_other_finishes(
    slots: list[Pipeline]
) -> None:
    engine = slots[0].drafter.engine
    prompts = [engine.tokenize(engine.render([{"role": "user", "content": q}]))
               for q in QUESTIONS]
    seqs = [slot.resolver.seq for slot in slots]
    held = [list(seq.tokens) for seq in seqs]
    keep = [len(tokens) for tokens in held]
    expected = greedy(engine, seqs[1], prompts[1], 32)
    engine.truncate(seqs[1], keep[1])
    cancelled = threading.Event()

    def doomed() -> list[int]:
        with engine.beyond(seqs[0], held[0]):
            return greedy(engine, seqs[0], prompts[0], 200, Guard(cancelled))

    def survivor() -> list[int]:
        tokens = greedy(engine, seqs[1], prompts[1], 32)
        cancelled.set()  # mid-way through the other's 200 tokens
        return tokens

    outcome = side_by_side(doomed, survivor)
    assert isinstance(outcome[0], CancelledError)
    assert not isinstance(outcome[1], BaseException), outcome[1]
    same_but_for_rounding(outcome[1], expected)  # type: ignore[arg-type]
    assert len(seqs[0].tokens) == keep[0]  # its cells are free again
    engine.truncate(seqs[1], keep[1])


def test_a_request_arriving_mid_generation_starts_within_one_prefill_slice(
    slots: list[Pipeline]
) -> None:
    engine = slots[0].drafter.engine
    scheduler = engine.scheduler
    assert scheduler is not None
    seqs = [slot.resolver.seq for slot in slots]
    held = [list(seq.tokens) for seq in seqs]
    keep = [len(tokens) for tokens in held]
    prompt = engine.tokenize(engine.render([{"role": "user", "content": next(iter(QUESTIONS))}]))
    long_prompt = engine.tokenize(" ".join(f"Item {n} is listed here." for n in range(120)))
    assert len(long_prompt) > 8 * SLICE
    generated: list[float] = []
    arrived: list[float] = []

    def generating() -> None:
        logits = engine.extend(seqs[0], prompt)[0]
        for _ in range(60):
            token = int(np.argmax(logits))
            logits = engine.extend(seqs[0], [token])[0]
            generated.append(time.perf_counter())

    def arriving() -> None:
        while len(generated) < 5:
            time.sleep(0.01)
        arrived.append(time.perf_counter())
        engine.extend(seqs[1], long_prompt)
        arrived.append(time.perf_counter())

    scheduler.stats.most_steps_waited = scheduler.stats.most_prompt_beside_decoding = 0
    side_by_side(generating, arriving)
    for seq, length in zip(seqs, keep, strict=True):
        engine.truncate(seq, length)
    # It started at the next step, and never took more than a slice beside the generating one,
    # which went on producing tokens while the long prompt was read.
    assert scheduler.stats.most_steps_waited <= 1
    assert scheduler.stats.most_prompt_beside_decoding <= SLICE
    during = [t for t in generated if arrived[0] <= t <= arrived[1]]
    assert len(during) >= len(long_prompt) // SLICE - 1


def test_threads_turning_tokens_into_text_each_get_their_own(slots: list[Pipeline]) -> None:
    # Requests decode in threads of their own; a buffer shared between them once turned
    # "Motegi" into "Motego" now and then (one call in thousands).
    engine = slots[0].drafter.engine
    words = [engine.tokenize(" Toshimitsu Motegi told reporters"),
             engine.tokenize(" Yonhap news agency quoted Kim You-geun")]
    expected = [[engine.piece(t) for t in tokens] for tokens in words]

    def pieces(tokens: list[int]) -> list[list[bytes]]:
        return [[engine.piece(t) for t in tokens] for _ in range(5000)]

    for got, wanted in zip(side_by_side(*(lambda t=t: pieces(t) for t in words)), expected,
                           strict=True):
        assert not isinstance(got, BaseException), got
        assert all(round_ == wanted for round_ in got)  # type: ignore[union-attr]
