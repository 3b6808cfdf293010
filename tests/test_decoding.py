"""The decoding loop on the real small model: free parts equal a reference greedy decode, forced
parts cost one llama_decode call each, cancellation stops within a step, saved KV prefixes are
used only where they belong."""

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import kv_state
from rag.decoding import Engine
from rag.errors import CancelledError, DeadlineExceededError
from rag.generation import (
    ANSWER_OPENING,
    FOUND_KEY,
    AnswerPrompt,
    CorpusPrompt,
    Generator,
    RetrievalPrompt,
)
from rag.guard import Guard
from rag.model_gate import ModelGate
from rag.model_loading import resolve_model_path
from rag.pipeline import Pipeline
from rag.prompts import load_template

pytestmark = pytest.mark.llm
QUESTION = "Who is Japan's foreign minister quoted in the article?"


@pytest.fixture(scope="module")
def reference_llama(pipeline: Pipeline) -> Iterator[object]:
    """llama-cpp-python's own completion API on the same model: the greedy reference."""
    from llama_cpp import Llama

    path, _ = resolve_model_path(pipeline.settings)
    llm = Llama(model_path=str(path), n_ctx=pipeline.settings.n_ctx, n_threads=2,
                n_threads_batch=2, verbose=False)
    yield llm
    llm.close()


def _reference_answer(llm: object, tokens: list[int]) -> str:
    result = llm.create_completion(prompt=tokens, max_tokens=40, temperature=0.0)  # type: ignore[attr-defined]
    return str(result["choices"][0]["text"]).split('"')[0]


def _prompt(pipeline: Pipeline, mode: str) -> AnswerPrompt:
    template = load_template(pipeline.settings.prompt, pipeline.settings.prompts_dir)
    if mode == "corpus":
        return CorpusPrompt(pipeline.engine, template, pipeline.index.chunks)
    return RetrievalPrompt(pipeline.engine, template)


@pytest.mark.parametrize("mode", ["corpus", "retrieval"])
def test_free_text_equals_a_reference_greedy_decode(pipeline: Pipeline, reference_llama: object,
                                                   mode: str) -> None:
    prompt = _prompt(pipeline, mode)
    generator = Generator(pipeline.engine, prompt, pipeline.settings.max_answer_tokens)
    passages = pipeline.retriever.search(QUESTION, 4)
    draft = generator.generate(QUESTION, passages)
    assert draft.found and "Motegi" in draft.answer
    plan = prompt.plan(QUESTION, passages)
    tokens = pipeline.engine.tokenize(plan.text + FOUND_KEY) + pipeline.engine.tokenize(
        ANSWER_OPENING)
    assert _reference_answer(reference_llama, tokens).strip() == draft.answer
    assert set(draft.cited) <= {p.chunk for p in passages}, "only retrieved passages are cited"


def test_each_forced_segment_is_one_decode_call(pipeline: Pipeline) -> None:
    engine, seq = pipeline.engine, pipeline.engine.sequences[0]
    pipeline.generator.generate("Who is Taro Kono?", [])  # the fixed prefix is in the cache now
    saved = list(seq.tokens)
    calls: list[tuple[int, int]] = []
    engine.recorder = lambda s, start, tokens, marks: calls.append((len(tokens), len(marks)))
    try:
        draft = pipeline.generator.generate(QUESTION, pipeline.retriever.search(QUESTION, 4))
    finally:
        engine.recorder = None
    batched = [c for c in calls if c[0] > 1]
    singles = [c for c in calls if c[0] == 1]
    # the question with '{"found": true, "answer": "' (two outputs: verdict and first token),
    # then '", "cite": [' ; every other call is one token the model chose (answer text, digits)
    assert len(batched) >= 2 and batched[0][1] == 2 and batched[1][1] == 1
    assert draft.decode_calls == len(calls) and draft.decode_steps == len(singles)
    assert draft.answer_tokens <= len(singles) <= draft.answer_tokens + 2 * len(draft.cited)
    segment = engine.tokenize(" one two three four five six seven eight nine ten")
    before = engine.stats.calls
    engine.extend(seq, segment)
    assert engine.stats.calls == before + 1
    engine.truncate(seq, len(saved))


def test_cancelling_mid_answer_frees_the_model_within_one_step(pipeline: Pipeline) -> None:
    gate = ModelGate(max_waiting=4)
    cancelled, first_delta = threading.Event(), threading.Event()
    outcome: list[BaseException] = []
    calls_after_cancel: list[int] = []
    pipeline.engine.recorder = lambda *_: cancelled.is_set() and calls_after_cancel.append(1)

    def answer() -> None:
        try:
            gate.run(lambda: pipeline.ask(QUESTION, on_delta=lambda _: first_delta.set(),
                                          guard=Guard(cancelled)))
        except BaseException as exc:  # the thread's outcome is checked below
            outcome.append(exc)

    worker = threading.Thread(target=answer)
    try:
        worker.start()
        assert first_delta.wait(60), "no answer text was streamed"
        cancelled.set()
        started = time.perf_counter()
        gate.run(lambda: None)  # waits for the model's lock
        freed_after = time.perf_counter() - started
        worker.join(30)
    finally:
        pipeline.engine.recorder = None
    assert outcome and isinstance(outcome[0], CancelledError)
    assert len(calls_after_cancel) <= 1
    assert freed_after < 1.0


def test_a_deadline_stops_the_answer(pipeline: Pipeline) -> None:
    guard = Guard(timeout_s=1e-9)
    time.sleep(0.01)
    with pytest.raises(DeadlineExceededError, match="RAG_REQUEST_TIMEOUT_S"):
        pipeline.generator.generate(QUESTION, pipeline.retriever.search(QUESTION, 4),
                                    guard=guard)


def _key(index: str, tokens: list[int]) -> dict[str, object]:
    return kv_state.prefix_key(tokens, index_fingerprint=index, model="m", template="t@1",
                               build="b")


def test_a_saved_prefix_is_refused_for_another_index(pipeline: Pipeline, tmp_path: Path) -> None:
    engine: Engine = pipeline.engine
    seq = engine.sequences[1]  # the verifier's: it reads its prefix again when next needed
    engine.truncate(seq, 0)
    first, second = tmp_path / "index-a" / "kv", tmp_path / "index-b" / "kv"
    try:
        tokens = engine.tokenize("<|im_start|>system\nA fixed prefix of one index.<|im_end|>\n")
        assert kv_state.prepare(engine, seq, tokens, first, "answer", _key("A", tokens)
                                ).startswith("read and saved")
        engine.truncate(seq, 0)
        assert kv_state.prepare(engine, seq, tokens, first, "answer", _key("A", tokens)) == "loaded"
        shutil.copytree(first, second)  # index B's folder now holds index A's state
        engine.truncate(seq, 0)
        outcome = kv_state.prepare(engine, seq, tokens, second, "answer", _key("B", tokens))
        assert "saved for another index" in outcome and seq.tokens == tokens
        (first / "answer.kv").write_bytes(b"truncated")  # damaged, with a matching key
        engine.truncate(seq, 0)
        outcome = kv_state.prepare(engine, seq, tokens, first, "answer", _key("A", tokens))
        assert outcome.startswith("read and saved") and seq.tokens == tokens
    finally:
        engine.truncate(seq, 0)


def test_verification_shares_the_model_and_keeps_its_prefix(pipeline: Pipeline) -> None:
    from rag.verification import Verifier

    verifier = Verifier(pipeline.engine, load_template("verify_v1", pipeline.settings.prompts_dir))
    answer_seq = list(pipeline.engine.sequences[0].tokens)
    text = "Later in the day, Foreign Minister Toshimitsu Motegi told reporters in Nagoya."
    first = verifier.probability(QUESTION, "Toshimitsu Motegi", text)
    before = pipeline.engine.stats.tokens
    again = verifier.probability(QUESTION, "Toshimitsu Motegi", text)
    read_again = pipeline.engine.stats.tokens - before
    # the last prompt token is read again alone: kernels for one token and for a batch differ
    # in the last digits, so the probability may move a little
    assert 0.0 <= first <= 1.0 and again == pytest.approx(first, abs=0.02)
    assert read_again <= 1, "the same verification is served from the KV cache"
    other = verifier.probability("Who is South Korea's president?", "Toshimitsu Motegi", text)
    assert pipeline.engine.stats.tokens - before < len(verifier.seq.tokens), "prefix reused"
    assert other != first
    assert pipeline.engine.sequences[0].tokens == answer_seq, "the answer sequence is untouched"
