"""The whole question pipeline on the real small GGUF model and the real index."""

import pytest

from rag.decision.policy import REFUSAL_ANSWER
from rag.errors import InputError
from rag.factory import warm_up
from rag.pipeline import Pipeline
from rag.retrieval.store import load_index
from rag.settings import Settings
from rag.types import Passage, Question, Turn
from tests.conftest import ARTICLE, DEFAULTS, ask

pytestmark = pytest.mark.llm


def test_answers_with_a_citation_that_quotes_the_source(pipeline: Pipeline) -> None:
    answer = ask(pipeline, "Who is Japan's foreign minister quoted in the article?")
    assert not answer.refused, answer.refusal_reason
    assert "Motegi" in answer.answer
    assert answer.citations
    for citation in answer.citations:
        assert ARTICLE[citation.start : citation.end] == citation.quote
        assert citation.source == "gsomia_article.txt"
    assert any("Motegi" in c.quote for c in answer.citations)
    assert answer.model == "qwen2.5-coder-0.5b-instruct"
    assert answer.prompt.startswith(DEFAULTS.prompt + "@")
    assert answer.confidence is not None and 0.0 <= answer.confidence <= 1.0
    assert answer.timings.total_s >= answer.timings.generate_s > 0


@pytest.mark.parametrize(
    "question",
    [
        "What is the population of Seoul?",
        "How do I bake sourdough bread at home?",
        "What is the boiling point of mercury in Kelvin?",
    ],
)
def test_refuses_questions_the_documents_do_not_answer(pipeline: Pipeline, question: str) -> None:
    answer = ask(pipeline, question)
    assert answer.refused, answer.answer
    assert answer.answer == REFUSAL_ANSWER
    assert answer.citations == []
    assert answer.passages, "the retrieved passages are still reported"


def test_answer_json_has_the_contract_keys(pipeline: Pipeline) -> None:
    data = ask(pipeline, "Where did Motegi speak to reporters?").to_dict()
    assert set(data) == {
        "question", "standalone_question", "answer", "refused", "confidence", "citations",
        "passages", "model", "prompt", "timings",
    }
    assert set(data["timings"]) == {"retrieve_s", "generate_s", "total_s"}
    for passage in data["passages"]:
        assert set(passage) == {"chunk_id", "source", "start", "end", "text", "score"}
        assert ARTICLE[passage["start"] : passage["end"]] == passage["text"]
    for citation in data["citations"]:
        assert set(citation) == {
            "id", "chunk_id", "source", "start", "end", "quote", "score", "page",
        }
        assert citation["page"] is None  # the article is a text file: no pages


def test_streaming_callbacks_see_passages_first_then_the_answer_text(pipeline: Pipeline) -> None:
    events: list[tuple[str, object]] = []

    def on_passages(passages: list[Passage]) -> None:
        events.append(("passages", passages))

    def on_delta(text: str) -> None:
        events.append(("delta", text))

    answer = ask(pipeline, "Which news agency quoted Kim You-geun?", on_passages=on_passages,
                 on_delta=on_delta)
    assert events[0][0] == "passages"
    deltas = "".join(str(text) for kind, text in events if kind == "delta")
    assert answer.trace is not None and deltas == answer.trace.draft
    assert deltas


def test_top_k_controls_how_many_passages_are_used(pipeline: Pipeline) -> None:
    assert len(ask(pipeline, "Who is Taro Kono?", top_k=2).passages) == 2


@pytest.mark.parametrize(
    ("question", "top_k", "min_confidence", "history", "message"),
    [
        ("", None, None, [], "empty"),
        ("   \n", None, None, [], "empty"),
        ("x" * 2001, None, None, [], "limit is 2000"),
        ("Who is Motegi?", 0, None, [], "top_k"),
        ("Who is Motegi?", 21, None, [], "top_k"),
        ("Who is Motegi?", None, 1.5, [], "min_confidence"),
        ("Who is Motegi?", None, None, [Turn("system", "x")], "role"),
    ],
)
def test_bad_input_is_a_clear_error(question: str, top_k: int | None,
                                    min_confidence: float | None, history: list[Turn],
                                    message: str) -> None:
    """Questions are checked once, where they enter; the pipeline trusts a Question."""
    with pytest.raises(InputError, match=message):
        Question.checked(question, DEFAULTS, top_k, history, min_confidence)


def test_saved_prompt_states_leave_the_index_whole(pipeline: Pipeline,
                                                   settings: Settings) -> None:
    warm_up(pipeline)  # saves the fixed prefix's state beside the index
    assert list((pipeline.index.path / "kv").glob("*.kv"))
    load_index(settings.index_dir, pipeline.retriever.embedder.name)


def test_a_follow_up_is_rewritten_from_the_conversation(pipeline: Pipeline) -> None:
    history = [Turn("user", "Who is Japan's foreign minister?"),
               Turn("assistant", "Toshimitsu Motegi")]
    answer = ask(pipeline, "Where did he speak to reporters?", history=history)
    assert answer.question == "Where did he speak to reporters?"
    assert answer.standalone_question is not None and "Motegi" in answer.standalone_question
    assert "Nagoya" in answer.answer
    assert answer.to_dict()["standalone_question"] == answer.standalone_question
    plain = ask(pipeline, "Where did Motegi speak to reporters?", history=history)
    assert plain.standalone_question is None  # nothing to rewrite: passed through
