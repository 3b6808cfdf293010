"""The other readers on the deterministic fake engine: follow-up resolution, verification side
by side, the context budget, and requests sharing decode calls through the scheduler."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from rag.answer.budget import passages_that_fit
from rag.answer.followup import Resolver
from rag.answer.prompts import load_template
from rag.answer.verification import Verifier
from rag.errors import ContextFullError
from rag.types import Chunk, Passage, Turn
from tests.conftest import DEFAULTS
from tests.fake_engine import FakeEngine, continuing

HISTORY = [Turn("user", "Who is Japan's foreign minister?"),
           Turn("assistant", "Toshimitsu Motegi")]
TEXT = "Later in the day, Foreign Minister Toshimitsu Motegi told reporters in Nagoya."


def _script(text: str) -> str:
    """Names the referent of "he"/"his" (and an ungrounded one for "they"); says yes when the
    proposed answer is in the quoted text."""
    turn = text.rsplit("<|im_start|>user\n", 1)[-1]
    if "Replace with:<|im_end|>" in turn:
        word = turn.rsplit("Word: ", 1)[1].split("\n", 1)[0]
        named = {"he": "Toshimitsu Motegi", "his": "Motegi"}.get(word, "Shinzo Abe")
        return continuing(text, f"{named}\n")
    if "Proposed answer: " in turn and text.endswith("<|im_start|>assistant\n"):
        answer = turn.split("Proposed answer: ", 1)[1].split("<|im_end|>", 1)[0]
        quoted = turn.split("Text: ", 1)[1].split("\nQuestion:", 1)[0]
        return "yes" if answer and answer in quoted else "no"
    return ""


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(_script, sequences=("answer", "verify", "followup", "c1", "c2"))


def _resolver(engine: FakeEngine) -> Resolver:
    template = load_template(DEFAULTS.followup_prompt, DEFAULTS.prompts_dir)
    return Resolver(engine, engine.sequence("followup"), template, DEFAULTS.max_history_turns)


def test_pointing_words_are_replaced_by_the_named_referent(engine: FakeEngine) -> None:
    resolver = _resolver(engine)
    assert resolver.standalone("What did he say in Nagoya?", HISTORY) == (
        "What did Toshimitsu Motegi say in Nagoya?")
    assert resolver.standalone("Where is his office?", HISTORY) == "Where is Motegi's office?"
    assert resolver.seq.tokens == resolver.prefix, "each resolution is dropped afterwards"


def test_a_referent_the_conversation_never_named_is_not_used(engine: FakeEngine) -> None:
    resolver = _resolver(engine)
    assert resolver.standalone("What did they decide?", HISTORY) == "What did they decide?"
    assert resolver.standalone("What did he decide?", []) == "What did he decide?"


@pytest.mark.parametrize("side_by_side", [True, False])
def test_each_candidate_is_verified_as_if_alone(engine: FakeEngine, side_by_side: bool) -> None:
    template = load_template(DEFAULTS.verify_prompt, DEFAULTS.prompts_dir)
    checks = (engine.sequence("c1"), engine.sequence("c2")) if side_by_side else ()
    verifier = Verifier(engine, engine.sequence("verify"), template, DEFAULTS.max_answer_tokens,
                        checks)
    answers = ["Toshimitsu Motegi", "Taro Kono", "Nagoya"]
    together, _ = verifier.verify_each("Who is Japan's foreign minister?", answers, TEXT)
    alone = [verifier.verify("Who is Japan's foreign minister?", a, TEXT).p_yes
             for a in answers]
    assert together == pytest.approx(alone)
    assert together[0] > 0.5 > together[1] and together[2] > 0.5  # the script checks text only
    assert all(not engine.sequence(name).tokens for name in ("c1", "c2"))


def test_the_budget_drops_the_lowest_passages_until_the_prompt_fits() -> None:
    passages = [Passage(Chunk(f"d:{i}", "d", 0, 10, "x" * 10, ((0, 10),)), 1.0 - i / 10, 0.5)
                for i in range(4)]

    def claim(shown: list[Passage]) -> int:
        return 100 + 50 * len(shown)

    kept, dropped = passages_that_fit(400, passages, claim, [150])
    assert (kept, dropped) == (passages[:3], passages[3:])
    assert passages_that_fit(1000, passages, claim, [150]) == (passages, [])
    with pytest.raises(ContextFullError, match="RAG_N_CTX"):
        passages_that_fit(200, passages, claim, [150])


def test_requests_sharing_the_scheduler_get_their_own_logits() -> None:
    """Two requests read at once through the scheduler (RAG_PARALLEL=2): each gets the logits
    of its own sequence, as when read alone."""
    engine = FakeEngine(lambda text: re.sub(r"\W", "", text)[-1:] or "x",
                        sequences=("a", "b"), slots=2, n_batch=8)
    reads = {"a": engine.tokenize("the first request's prompt, longer than a batch"),
             "b": engine.tokenize("a second one")}
    found: dict[str, list[np.typing.NDArray[np.single]]] = {}
    try:
        threads = [threading.Thread(target=lambda n=name: found.setdefault(
            n, engine.extend(engine.sequence(n), reads[n], outputs=(0, -1))))
            for name in reads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        engine.close()
    for name, tokens in reads.items():
        assert engine.sequence(name).tokens == tokens
        expected = [engine.logits_after(tokens[:1]), engine.logits_after(tokens)]
        assert all(np.array_equal(a, b) for a, b in zip(found[name], expected, strict=True))
