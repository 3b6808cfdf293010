"""The reply loop on the deterministic fake engine: prompt lookup changes the steps, never the
draft; a refusal decodes nothing; stored passages, with their first tokens read anew, are read
once and then only appended; the budget claims what the loop may read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rag.answer.drafting import BRANCH_TOKENS, REPLY_TOKENS, Drafter
from rag.answer.layouts import RetrievalPrompt, ReusePrompt
from rag.answer.passage_states import PassageStates
from rag.answer.prompts import load_template
from rag.types import Chunk, Passage
from tests.conftest import DEFAULTS
from tests.fake_engine import FakeEngine, reader_script

QUESTION = "Who is Japan's foreign minister?"
ANSWER = "Toshimitsu Motegi"
TEXTS = (
    "Later in the day, Foreign Minister Toshimitsu Motegi told reporters in Nagoya.",
    "South Korea said on Friday it would end the intelligence-sharing pact.",
    "Japan tightened its export controls on three chemicals in July.",
    "The pact, signed in 2016, was due to be renewed automatically in November.",
)


def _passages() -> list[Passage]:
    chunks = [Chunk(f"doc:{i}", "doc", 100 * i, 100 * i + len(t), t, ((100 * i, 100 * i + len(t)),))
              for i, t in enumerate(TEXTS)]
    return [Passage(chunk, 1.0 - 0.1 * i, 0.5) for i, chunk in enumerate(chunks)]


def _engine(**kwargs: object) -> FakeEngine:
    # The runner-up first token makes a branch: a second answer decoded beside the greedy one.
    return FakeEngine(reader_script({QUESTION: ANSWER}),
                      runner_up=lambda text: " Taro" if text.endswith('"answer": "') else "",
                      **kwargs)  # type: ignore[arg-type]


def _drafter(engine: FakeEngine, lookahead: int, prompt: RetrievalPrompt | None = None) -> Drafter:
    template = load_template(DEFAULTS.prompt, DEFAULTS.prompts_dir)
    return Drafter(engine, engine.sequence("answer"), prompt or RetrievalPrompt(engine, template),
                   DEFAULTS.max_answer_tokens, (engine.sequence("verify"),), lookahead)


@pytest.mark.parametrize("slots", [1, 2])
def test_prompt_lookup_gives_the_same_draft_in_fewer_calls(slots: int) -> None:
    engine = _engine(slots=slots)
    try:
        plain = _drafter(engine, 0).generate(QUESTION, _passages())
        guessed = _drafter(engine, 4).generate(QUESTION, _passages())
    finally:
        engine.close()
    assert plain.found and plain.answer == ANSWER
    assert dataclasses.replace(guessed, decode_calls=0, decode_steps=0) == dataclasses.replace(
        plain, decode_calls=0, decode_steps=0)
    assert [c.origin for c in plain.candidates][:1] == ["greedy"]
    assert any(c.origin == "branch" for c in plain.candidates), "the runner-up was decoded"
    assert guessed.decode_calls < plain.decode_calls


def test_guesses_the_model_rejects_leave_nothing_behind() -> None:
    """The best passage says "Toshimitsu Mo-" first, so the guesses after "Toshimitsu M" are
    wrong: read, rejected and dropped. The fake model reads the sequence's tokens, so a guess
    left in the cache would change what it writes next."""
    engine = _engine()
    decoy = _passages()[0].chunk
    misleading = [Passage(dataclasses.replace(decoy, chunk_id="doc:decoy",
                                              text="Toshimitsu Mo-ri, a historian, said so."),
                          1.5, 0.5), *_passages()]
    plain = _drafter(engine, 0).generate(QUESTION, misleading)
    guessed = _drafter(engine, 8).generate(QUESTION, misleading)
    assert guessed.answer == plain.answer == ANSWER
    assert guessed.candidates == plain.candidates


def test_a_question_the_passages_do_not_answer_decodes_nothing() -> None:
    engine = _engine()
    draft = _drafter(engine, 3).generate("Who won the 2019 Rugby World Cup?", _passages())
    assert not draft.found and draft.answer == "" and draft.candidates == []
    assert draft.decode_steps == 0 and draft.answer_tokens == 0


@pytest.mark.parametrize("fresh_tokens", [0, 4])
def test_stored_passages_are_read_once_then_appended(tmp_path: Path, fresh_tokens: int) -> None:
    engine = _engine()
    template = load_template(DEFAULTS.prompt, DEFAULTS.prompts_dir)
    states = PassageStates(engine, tmp_path, model="fake", template=template.version, build="b")
    reuse = ReusePrompt(engine, template, states, fresh=1, fresh_tokens=fresh_tokens)
    drafter = _drafter(engine, 0, reuse)
    first = drafter.generate(QUESTION, _passages())
    before = engine.stats.tokens
    again = drafter.generate(QUESTION, _passages())
    read = engine.stats.tokens - before
    assert first == dataclasses.replace(again, decode_calls=first.decode_calls,
                                        decode_steps=first.decode_steps)
    assert again.found and again.answer == ANSWER
    assert (states.stats.computed, states.stats.loaded) == (3, 3)
    plan = reuse.plan(QUESTION, _passages())
    stored = [len(t) - fresh_tokens for s, t in zip(plan.segments, drafter._tokens(plan),
                                                    strict=True) if s.stored]
    # Read again: the prompt but its fixed prefix and the stored passages' cells, then the
    # reply, which is shorter than any passage here (re-reading one would show).
    prompt_read = again.prompt_tokens - len(drafter.prefix) - sum(stored)
    assert prompt_read < read < prompt_read + min(stored)


def test_the_claim_covers_the_guesses_and_the_branches() -> None:
    engine = _engine()
    plain, guessing = _drafter(engine, 0), _drafter(engine, 8)
    assert guessing.claim(QUESTION, _passages()) - plain.claim(QUESTION, _passages()) == 8
    prompt = sum(map(len, plain._tokens(plain.prompt.plan(QUESTION, _passages()))))
    assert plain.claim(QUESTION, _passages()) == (
        prompt + DEFAULTS.max_answer_tokens + REPLY_TOKENS + BRANCH_TOKENS)
