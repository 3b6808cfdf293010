"""The whole question pipeline on the real small GGUF model and the real index."""

import pytest

from rag.conversation import Turn
from rag.errors import InputError
from rag.index_store import load_index
from rag.pipeline import Pipeline
from rag.refusal import REFUSAL_ANSWER
from rag.types import Passage
from tests.conftest import ARTICLE

pytestmark = pytest.mark.llm


def test_answers_with_a_citation_that_quotes_the_source(pipeline: Pipeline) -> None:
    answer = pipeline.ask("Who is Japan's foreign minister quoted in the article?")
    assert not answer.refused, answer.refusal_reason
    assert "Motegi" in answer.answer
    assert answer.citations
    for citation in answer.citations:
        assert ARTICLE[citation.start : citation.end] == citation.quote
        assert citation.source == "gsomia_article.txt"
    assert any("Motegi" in c.quote for c in answer.citations)
    assert answer.model == "qwen2.5-coder-0.5b-instruct"
    assert answer.prompt.startswith(pipeline.settings.prompt + "@")
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
    answer = pipeline.ask(question)
    assert answer.refused, answer.answer
    assert answer.answer == REFUSAL_ANSWER
    assert answer.citations == []
    assert answer.passages, "the retrieved passages are still reported"


def test_answer_json_has_the_contract_keys(pipeline: Pipeline) -> None:
    data = pipeline.ask("Where did Motegi speak to reporters?").to_dict()
    assert set(data) == {
        "question", "standalone_question", "answer", "refused", "citations", "passages", "model",
        "prompt", "timings",
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

    answer = pipeline.ask(
        "Which news agency quoted Kim You-geun?", on_passages=on_passages, on_delta=on_delta
    )
    assert events[0][0] == "passages"
    deltas = "".join(str(text) for kind, text in events if kind == "delta")
    assert deltas == answer.trace["draft"]
    assert deltas


def test_top_k_controls_how_many_passages_are_used(pipeline: Pipeline) -> None:
    assert len(pipeline.ask("Who is Taro Kono?", top_k=2).passages) == 2


@pytest.mark.parametrize(
    ("question", "top_k", "message"),
    [
        ("", None, "empty"),
        ("   \n", None, "empty"),
        ("x" * 2001, None, "limit is 2000"),
        ("Who is Motegi?", 0, "top_k"),
        ("Who is Motegi?", 21, "top_k"),
    ],
)
def test_bad_input_is_a_clear_error(
    pipeline: Pipeline, question: str, top_k: int | None, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        pipeline.ask(question, top_k=top_k)


def test_saved_prompt_states_leave_the_index_whole(pipeline: Pipeline) -> None:
    pipeline.warm_up()  # saves the fixed prefix's state beside the index
    assert list((pipeline.index.path / "kv").glob("*.kv"))
    load_index(pipeline.settings.index_dir, pipeline.retriever.embedder.name)


def test_a_follow_up_is_rewritten_from_the_conversation(pipeline: Pipeline) -> None:
    history = [Turn("user", "Who is Japan's foreign minister?"),
               Turn("assistant", "Toshimitsu Motegi")]
    answer = pipeline.ask("Where did he speak to reporters?", history=history)
    assert answer.question == "Where did he speak to reporters?"
    assert answer.standalone_question is not None and "Motegi" in answer.standalone_question
    assert "Nagoya" in answer.answer
    assert answer.to_dict()["standalone_question"] == answer.standalone_question
    plain = pipeline.ask("Where did Motegi speak to reporters?", history=history)
    assert plain.standalone_question is None  # nothing to rewrite: passed through
