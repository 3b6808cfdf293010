"""Stored passage KV states on the real small model: appended and shifted, they predict what a
full read of the same tokens predicts; a state is never loaded for another model, template,
llama.cpp build or passage text."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.answer.drafting import Drafter
from rag.answer.layouts import ReusePrompt, reuse_layout
from rag.answer.passage_states import PassageStates
from rag.answer.prompts import load_template
from rag.llm.engine import Engine, KvSequence, Logits
from rag.pipeline import Pipeline
from tests.conftest import DEFAULTS

pytestmark = pytest.mark.llm
MOTEGI = "Later in the day, Foreign Minister Toshimitsu Motegi told reporters in Nagoya."


def _states(engine: Engine, root: Path, template: str = "t@1") -> PassageStates:
    return PassageStates(engine, root, model=engine.model.identity, template=template, build="b")


def _divergence(reference: Logits, other: Logits) -> float:
    """KL(reference || other) of the next-token distributions."""
    def log_softmax(logits: Logits) -> Logits:
        shifted = logits - logits.max()
        return shifted - np.log(np.exp(shifted).sum())
    p, q = log_softmax(reference), log_softmax(other)
    return float((np.exp(p) * (p - q)).sum())


def _read(engine: Engine, seq: KvSequence, parts: list[list[int]], stored: int,
          states: PassageStates | None, context: int, fresh: int = 0) -> Logits:
    """Read ``parts`` after the first ``context`` tokens of ``seq``; part ``stored`` from
    ``states`` when given (its first ``fresh`` tokens read anew), else everything fresh. The
    logits after the last token."""
    engine.truncate(seq, context)
    logits: Logits | None = None
    for i, tokens in enumerate(parts):
        if i == stored and states is not None:
            states.append(seq, tokens, context, fresh=fresh)
        else:
            logits = engine.extend(seq, tokens)[0]
    assert logits is not None
    return logits


@pytest.fixture()
def reader(pipeline: Pipeline) -> tuple[Engine, KvSequence, int, list[list[int]]]:
    """The answer sequence at the fixed prefix, and a one-passage prompt after it: "[1]",
    the passage, then the question and the reply's opening."""
    drafter = pipeline.drafter
    engine = drafter.engine
    prefix = drafter.prefix
    engine.sync(drafter.seq, prefix)
    parts = [engine.tokenize("[1]"), engine.tokenize(f" {MOTEGI}\n\n"),
             engine.tokenize("Question: Who is Japan's foreign minister?<|im_end|>\n"
                             '<|im_start|>assistant\n{"found": true, "answer": "')]
    return engine, drafter.seq, len(prefix), parts


def test_a_stored_passage_shifted_into_place_predicts_like_a_full_read(
        reader: tuple[Engine, KvSequence, int, list[list[int]]], tmp_path: Path) -> None:
    engine, seq, context, parts = reader
    states = _states(engine, tmp_path)
    full = _read(engine, seq, parts, 1, None, context)
    computed = _read(engine, seq, parts, 1, states, context)  # computed alone, then appended
    loaded = _read(engine, seq, parts, 1, states, context)  # from the file
    engine.truncate(seq, context)
    assert (states.stats.computed, states.stats.loaded) == (1, 1)
    assert int(np.argmax(full)) == int(np.argmax(computed)) == int(np.argmax(loaded))
    assert "Toshimitsu".startswith(engine.detokenize([int(np.argmax(loaded))]).strip())
    np.testing.assert_allclose(computed, loaded, atol=1e-3)
    # The passage's cells were computed three positions earlier, without "[1]" before them:
    # shifted into place they predict almost what the full read predicts.
    assert _divergence(full, loaded) < 0.05


def test_a_passage_shifted_far_from_where_it_was_read_still_predicts_like_a_full_read(
        reader: tuple[Engine, KvSequence, int, list[list[int]]], tmp_path: Path) -> None:
    """Stored right after the prefix, appended 200 positions later: the K-shift rotates every
    cell by 203 positions (a missing or wrong shift reads the passage from elsewhere)."""
    engine, seq, context, parts = reader
    states = _states(engine, tmp_path)
    padded = [engine.tokenize(" Note." * 100) + parts[0], *parts[1:]]
    full = _read(engine, seq, padded, 1, None, context)
    shifted = _read(engine, seq, padded, 1, states, context)
    engine.truncate(seq, context)
    assert int(np.argmax(full)) == int(np.argmax(shifted))
    assert _divergence(full, shifted) < 0.05


@pytest.mark.parametrize("fresh", [4, 16])
def test_a_stored_passage_with_its_first_tokens_read_anew_predicts_like_a_full_read(
        reader: tuple[Engine, KvSequence, int, list[list[int]]], tmp_path: Path,
        fresh: int) -> None:
    """EPIC: the passage's first ``fresh`` tokens are read where it lands, the rest comes from
    its state shifted 200 positions; only those tokens and the question are read."""
    engine, seq, context, parts = reader
    states = _states(engine, tmp_path)
    padded = [engine.tokenize(" Note." * 100) + parts[0], *parts[1:]]
    full = _read(engine, seq, padded, 1, None, context)
    _read(engine, seq, padded, 1, states, context)  # computes the state
    before = engine.stats.tokens
    anew = _read(engine, seq, padded, 1, states, context, fresh=fresh)
    read = engine.stats.tokens - before
    engine.truncate(seq, context)
    assert read == len(padded[0]) + fresh + len(padded[2])
    assert int(np.argmax(full)) == int(np.argmax(anew))
    assert _divergence(full, anew) < 0.05


def test_a_state_is_never_loaded_for_another_template_model_build_or_text(
        reader: tuple[Engine, KvSequence, int, list[list[int]]], tmp_path: Path) -> None:
    engine, seq, context, parts = reader
    first = _states(engine, tmp_path)
    _read(engine, seq, parts, 1, first, context)
    assert first.stats.computed == 1
    for other in (_states(engine, tmp_path, template="t@2"),
                  PassageStates(engine, tmp_path, model="other", template="t@1", build="b"),
                  PassageStates(engine, tmp_path, model=engine.model.identity, template="t@1",
                                build="other")):
        assert other.folder != first.folder
        _read(engine, seq, parts, 1, other, context)
        assert (other.stats.loaded, other.stats.computed) == (0, 1)
    # Another passage's text under this passage's file name: refused, computed afresh.
    (stored,) = first.folder.glob("*.kv")
    other_text = engine.tokenize(" Seoul said the pact would end.\n\n")
    _read(engine, seq, [parts[0], other_text, parts[2]], 1, first, context)
    (new,) = set(first.folder.glob("*.kv")) - {stored}
    shutil.copy(stored, new)
    before = first.stats.computed
    _read(engine, seq, [parts[0], other_text, parts[2]], 1, first, context)
    engine.truncate(seq, context)
    assert first.stats.computed == before + 1 and first.stats.loaded == 0


def test_the_store_keeps_within_its_bound_deleting_what_was_used_longest_ago(
        reader: tuple[Engine, KvSequence, int, list[list[int]]], tmp_path: Path) -> None:
    engine, seq, context, parts = reader
    texts = [f" Passage number {n} says something else.\n\n" for n in range(4)]
    states = _states(engine, tmp_path)
    _read(engine, seq, [parts[0], engine.tokenize(texts[0]), parts[2]], 1, states, context)
    one = states.size_bytes()
    states.max_bytes = int(2.5 * one)
    for text in texts[1:]:
        _read(engine, seq, [parts[0], engine.tokenize(text), parts[2]], 1, states, context)
    _read(engine, seq, [parts[0], engine.tokenize(texts[3]), parts[2]], 1, states, context)
    engine.truncate(seq, context)
    assert states.stats.evicted >= 2 and states.size_bytes() <= states.max_bytes
    assert states.stats.loaded == 1, "the newest state is kept"


def test_the_reuse_layout_answers_from_stored_passages(pipeline: Pipeline) -> None:
    engine = pipeline.drafter.engine
    template = load_template(DEFAULTS.prompt, DEFAULTS.prompts_dir)
    prompt = reuse_layout(engine, template, pipeline.index, DEFAULTS)
    assert isinstance(prompt, ReusePrompt) and prompt.states is not None
    drafter = Drafter(engine, engine.sequence("answer"), prompt, DEFAULTS.max_answer_tokens)
    question = "Who is Japan's foreign minister quoted in the article?"
    passages = pipeline.retriever.search(question, 4)
    plan = prompt.plan(question, passages)
    assert [s.stored for s in plan.segments] == [False, True] * 2 + [False]  # best two fresh
    assert plan.numbers[4] == passages[0].chunk, "the best passage is shown last"
    assert sum(map(len, drafter._tokens(plan))) == len(
        engine.tokenize(plan.text + '{"found":')), "segments tokenize as the whole text does"
    first = drafter.generate(question, passages)
    read_before = engine.stats.tokens
    again = drafter.generate(question, passages)
    assert prompt.states.stats.loaded >= 2
    stored = sum(len(t) for s, t in zip(plan.segments, drafter._tokens(plan), strict=True)
                 if s.stored)
    # Read: the prompt but its fixed prefix and stored passages, and the reply (its forced
    # parts, the answer and the guesses beside it: at most 64 tokens here).
    fresh = again.prompt_tokens - len(drafter.prefix) - stored
    assert fresh <= engine.stats.tokens - read_before <= fresh + 64, (len(drafter.prefix), stored)
    assert first.found and "Motegi" in first.answer and again.answer == first.answer
    assert set(first.cited) <= {p.chunk for p in passages}
    engine.truncate(drafter.seq, 0)
