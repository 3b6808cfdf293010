"""The decoding loop on the real small model: free parts equal a reference greedy decode, forced
parts cost one llama_decode call each, cancellation stops within a step, saved KV prefixes are
used only where they belong."""

import dataclasses
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.answer.drafting import ANSWER_OPENING, FOUND_KEY, Drafter
from rag.answer.layouts import AnswerPrompt, CorpusPrompt, RetrievalPrompt
from rag.answer.prompts import load_template
from rag.answer.verification import Verifier
from rag.errors import CancelledError, DeadlineExceededError
from rag.guard import Guard
from rag.llm import kv_state
from rag.llm.engine import Engine
from rag.llm.loading import choose_model
from rag.llm.recording import recording
from rag.pipeline import Pipeline
from rag.serve.admission import ModelGate
from rag.settings import Settings
from tests.conftest import DEFAULTS, ask

pytestmark = pytest.mark.llm
QUESTION = "Who is Japan's foreign minister quoted in the article?"
MOTEGI = "Later in the day, Foreign Minister Toshimitsu Motegi told reporters in Nagoya."


@pytest.fixture(scope="module")
def reference_llama(settings: Settings) -> Iterator[object]:
    """llama-cpp-python's own completion API on the same model: the greedy reference."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(choose_model(settings).path), n_ctx=settings.n_ctx, n_threads=2,
                n_threads_batch=2, verbose=False)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def verifier(pipeline: Pipeline) -> Verifier:
    engine = pipeline.drafter.engine
    return Verifier(engine, engine.sequence("verify"),
                    load_template("verify_v1", DEFAULTS.prompts_dir), DEFAULTS.max_answer_tokens)


def _reference_answer(llm: object, tokens: list[int]) -> str:
    result = llm.create_completion(prompt=tokens, max_tokens=40, temperature=0.0)  # type: ignore[attr-defined]
    return str(result["choices"][0]["text"]).split('"')[0]


def _prompt(pipeline: Pipeline, mode: str) -> AnswerPrompt:
    template = load_template(DEFAULTS.prompt, DEFAULTS.prompts_dir)
    if mode == "corpus":
        return CorpusPrompt(pipeline.drafter.engine, template, pipeline.index.chunks)
    return RetrievalPrompt(pipeline.drafter.engine, template)


@pytest.mark.parametrize("mode", ["corpus", "retrieval"])
def test_free_text_equals_a_reference_greedy_decode(pipeline: Pipeline, reference_llama: object,
                                                   mode: str) -> None:
    prompt, engine = _prompt(pipeline, mode), pipeline.drafter.engine
    drafter = Drafter(engine, engine.sequence("answer"), prompt, DEFAULTS.max_answer_tokens,
                      lookahead=DEFAULTS.lookahead_tokens)
    passages = pipeline.retriever.search(QUESTION, 4)
    draft = drafter.generate(QUESTION, passages)
    assert draft.found and "Motegi" in draft.answer
    assert draft.answer_logprob is not None and draft.answer_logprob <= 0.0
    plan = prompt.plan(QUESTION, passages)
    tokens = engine.tokenize(plan.text + FOUND_KEY) + engine.tokenize(ANSWER_OPENING)
    assert _reference_answer(reference_llama, tokens).strip() == draft.answer
    assert set(draft.cited) <= {p.chunk for p in passages}, "only retrieved passages are cited"


def test_guessing_tokens_from_the_prompt_keeps_the_greedy_answer_in_fewer_steps(
        pipeline: Pipeline) -> None:
    """Prompt-lookup decoding: the same answer and candidates as one token a step (the branches
    beside it included), and fewer steps where the answer is copied from a passage."""
    guessing = pipeline.drafter
    plain = dataclasses.replace(guessing, lookahead=0)
    assert guessing.lookahead > 0
    steps = {"plain": 0, "guessing": 0}
    for question in (QUESTION, "Where did Motegi speak to reporters?",
                     "What did South Korea say it would do with GSOMIA?"):
        passages = pipeline.retriever.search(question, 4)
        one, many = plain.generate(question, passages), guessing.generate(question, passages)
        assert many.found and many.answer == one.answer and many.cited == one.cited
        assert [c.text for c in many.candidates] == [c.text for c in one.candidates]
        assert many.answer_logprob == pytest.approx(one.answer_logprob, abs=0.02)
        steps["plain"] += one.decode_calls
        steps["guessing"] += many.decode_calls
    assert steps["guessing"] < steps["plain"], steps


def test_each_forced_segment_is_one_decode_call(pipeline: Pipeline) -> None:
    drafter = pipeline.drafter
    engine, seq = drafter.engine, drafter.seq
    drafter.generate("Who is Taro Kono?", [])  # the fixed prefix is in the cache now
    saved = list(seq.tokens)
    with recording(engine) as recorded:
        draft = drafter.generate(QUESTION, pipeline.retriever.search(QUESTION, 4))
    reads = [call for call in recorded if call.tokens or call.side]  # a fork reads nothing
    calls = [(len(call.tokens), len(call.outputs)) for call in reads if not call.side]
    # Candidate answers decoded side by side: one call per step, a token per sequence.
    side = [sum(len(tokens) for _, _, tokens, _ in call.side) for call in reads if call.side]
    batched = [c for c in calls if c[0] > 1]
    singles = [c for c in calls if c[0] == 1]
    # the question with '{"found": true, "answer": "' (two outputs: verdict and first token),
    # then '", "cite": [' ; every other call is the tokens the model chose (answer text, digits)
    assert len(batched) >= 2 and batched[0][1] == 2 and batched[1][1] == 1
    assert draft.decode_calls == len(reads)
    assert draft.decode_steps == len(singles) + side.count(1)
    # Guessed tokens are read beside the one chosen, so a call may hold several answer tokens.
    assert draft.answer_tokens <= len(singles) + sum(side)
    assert len(singles) <= draft.answer_tokens + 2 * len(draft.cited)
    segment = engine.tokenize(" one two three four five six seven eight nine ten")
    before = engine.stats.calls
    engine.extend(seq, segment)
    assert engine.stats.calls == before + 1
    engine.truncate(seq, len(saved))


def test_cancelling_mid_answer_frees_the_model_within_one_step(pipeline: Pipeline) -> None:
    gate = ModelGate(max_waiting=4)
    cancelled, first_delta = threading.Event(), threading.Event()
    outcome: list[BaseException] = []
    calls_at_cancel: list[int] = []

    def on_delta(_: str) -> None:
        first_delta.set()

    def answer() -> None:
        try:
            gate.run(lambda: ask(pipeline, QUESTION, on_delta=on_delta, guard=Guard(cancelled)))
        except BaseException as exc:  # the thread's outcome is checked below
            outcome.append(exc)

    with recording(pipeline.drafter.engine) as calls:
        worker = threading.Thread(target=answer)
        worker.start()
        assert first_delta.wait(60), "no answer text was streamed"
        cancelled.set()
        calls_at_cancel.append(len(calls))
        started = time.perf_counter()
        gate.run(lambda: None)  # waits for the model's lock
        freed_after = time.perf_counter() - started
        worker.join(30)
        calls_after_cancel = len(calls) - calls_at_cancel[0]
    assert outcome and isinstance(outcome[0], CancelledError)
    assert calls_after_cancel <= 1
    assert freed_after < 1.0


def test_a_deadline_stops_the_answer(pipeline: Pipeline) -> None:
    guard = Guard(timeout_s=1e-9)
    time.sleep(0.01)
    with pytest.raises(DeadlineExceededError, match="RAG_REQUEST_TIMEOUT_S"):
        pipeline.drafter.generate(QUESTION, pipeline.retriever.search(QUESTION, 4), guard=guard)


def _key(index: str, tokens: list[int]) -> dict[str, object]:
    return kv_state.prefix_key(tokens, index_fingerprint=index, model="m", template="t@1",
                               build="b")


def test_a_saved_prefix_is_refused_for_another_index(pipeline: Pipeline, tmp_path: Path) -> None:
    engine: Engine = pipeline.drafter.engine
    seq = engine.sequence("verify")  # it reads its prefix again when next needed
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


def test_verification_is_read_after_its_fixed_prefix_the_same_every_time(
        pipeline: Pipeline, verifier: Verifier) -> None:
    engine = pipeline.drafter.engine
    answer_seq = list(pipeline.drafter.seq.tokens)
    first = verifier.verify(QUESTION, "Toshimitsu Motegi", MOTEGI).p_yes
    verifier.verify("Who is Taro Kono?", "Defense Minister", "Taro Kono told a conference.")
    before = engine.stats.tokens
    again = verifier.verify(QUESTION, "Toshimitsu Motegi", MOTEGI).p_yes
    # Always read from the end of the instructions, so the previous question changes nothing.
    assert again == first and 0.0 <= first <= 1.0
    assert 0 < engine.stats.tokens - before < 120, "only what follows the instructions is read"
    assert verifier.seq.tokens == verifier.prefix, "the prefix is kept, the rest dropped"
    assert pipeline.drafter.seq.tokens == answer_seq, "the answer sequence is untouched"


def test_the_verifier_prefers_the_question_its_text_answers(verifier: Verifier) -> None:
    right = verifier.verify(QUESTION, "Toshimitsu Motegi", MOTEGI).p_yes
    other_role = verifier.verify("Who is South Korea's president?", "Toshimitsu Motegi",
                                 MOTEGI).p_yes
    assert right > other_role


def test_the_text_explains_its_own_words_better_than_a_swapped_entity(
        verifier: Verifier) -> None:
    """Question PMI: a question whose words the evidence contains gets a higher mean and a higher
    least PMI than the same question with one entity swapped for one the evidence lacks."""
    kept = verifier.verify("Where did Foreign Minister Motegi tell reporters?", "Nagoya", MOTEGI,
                           pmi=True).question_pmi
    swapped = verifier.verify("Where did Defense Minister Kono tell reporters?", "Nagoya",
                              MOTEGI, pmi=True).question_pmi
    assert kept is not None and swapped is not None
    assert sum(kept) / len(kept) > sum(swapped) / len(swapped)
    assert min(kept) > min(swapped)
