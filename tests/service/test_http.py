"""The real service: `rag serve` in a subprocess on 127.0.0.1, real models, a real HTTP client."""

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jsonschema
import msgspec
import openai
import pytest

from tests.conftest import ARTICLE
from tests.servers import Server, samples

pytestmark = pytest.mark.llm

QUESTION = "Who is Japan's foreign minister quoted in the article?"


@pytest.fixture
def server(article_server: Server) -> Server:
    return article_server


def test_readyz_flips_to_200_after_loading(server: Server) -> None:
    assert server.readiness[0] == 503
    assert server.readiness[-1] == 200
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


def test_ask_answers_with_a_correct_citation(server: Server) -> None:
    response = httpx.post(f"{server.url}/v1/ask", json={"question": QUESTION}, timeout=120)
    assert response.status_code == 200
    answer = response.json()
    assert "Motegi" in answer["answer"] and answer["refused"] is False
    assert any("Motegi" in c["quote"] for c in answer["citations"])
    for c in answer["citations"]:
        assert ARTICLE[c["start"] : c["end"]] == c["quote"]
        assert set(c) == {"id", "chunk_id", "source", "start", "end", "quote", "score", "page"}
        assert c["page"] is None  # the article is a text file: no pages
    assert set(answer) == {"question", "standalone_question", "answer", "refused", "confidence",
                           "citations", "passages", "model", "prompt", "timings"}
    assert 0.0 < answer["confidence"] <= 1.0


def test_a_stricter_operating_point_refuses_what_the_default_answers(server: Server) -> None:
    """The request's own min_confidence: above the answer's confidence it is refused; the
    OpenAI route takes it as an extra field."""
    answered = httpx.post(f"{server.url}/v1/ask", json={"question": QUESTION}, timeout=120).json()
    assert not answered["refused"] and answered["confidence"] < 0.9999
    strict = {"question": QUESTION, "min_confidence": 0.9999}
    refused = httpx.post(f"{server.url}/v1/ask", json=strict, timeout=120).json()
    assert refused["refused"] and refused["confidence"] is None and refused["citations"] == []
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    completion = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": QUESTION}],
        extra_body={"min_confidence": 0.9999})
    assert (completion.model_extra or {})["refused"] is True
    bad = httpx.post(f"{server.url}/v1/ask", json={"question": QUESTION, "min_confidence": 2},
                     timeout=30)
    assert bad.status_code == 400 and "min_confidence" in bad.json()["error"]["message"]


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event or "message", json.loads(line.removeprefix("data: "))
            event = None


def test_stream_yields_passages_then_deltas_then_the_answer(server: Server) -> None:
    with httpx.stream("POST", f"{server.url}/v1/ask/stream", json={"question": QUESTION},
                      timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(_sse_events(response.iter_lines()))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "passages" and kinds[-1] == "answer"
    assert "delta" in kinds
    assert events[0][1]["passages"][0]["text"]
    final = events[-1][1]
    assert "Motegi" in final["answer"] and final["citations"]


def test_openai_client_non_streaming(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    completion = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.object == "chat.completion"
    assert "Motegi" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    extra = completion.model_extra or {}
    assert any("Motegi" in c["quote"] for c in extra["citations"])
    assert extra["refused"] is False and 0.0 < extra["confidence"] <= 1.0


def test_openai_client_follow_up_is_answered_from_the_conversation(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    first = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Who is Japan's foreign minister?"}])
    said = first.choices[0].message.content or ""
    assert "Motegi" in said
    follow_up = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "Who is Japan's foreign minister?"},
                  {"role": "assistant", "content": said},
                  {"role": "user", "content": "Where did he speak to reporters?"}])
    assert "Nagoya" in (follow_up.choices[0].message.content or "")
    assert "Motegi" in (follow_up.model_extra or {})["standalone_question"]


def test_openai_client_streaming(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model="local", stream=True,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Where did Motegi speak to reporters?"}],
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert "Nagoya" in text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (chunks[-1].model_extra or {})["citations"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        ({"question": ""}, None, 400, "empty"),
        ({"question": "x" * 2001}, None, 400, "limit is 2000"),
        ({"question": "Who?", "top_k": 0}, None, 400, "top_k"),
        ({"top_k": 3}, None, 400, "question"),
        ({"question": 42}, None, 400, "question"),
        (b"{not json", {"content-type": "application/json"}, 400, ""),
        (b"question=hi", {"content-type": "application/x-www-form-urlencoded"}, 415, "json"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_json_body(
    server: Server, body: Any, headers: dict[str, str] | None, status: int, says: str
) -> None:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(f"{server.url}/v1/ask", headers=headers, timeout=30, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says.lower() in json.dumps(error).lower()
    assert "Traceback" not in response.text


def test_chat_without_a_user_message_is_400(server: Server) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions",
                          json={"messages": [{"role": "system", "content": "hi"}]})
    assert response.status_code == 400
    assert "role 'user'" in response.json()["error"]["message"]


def test_unknown_route_is_a_json_404(server: Server) -> None:
    response = httpx.get(f"{server.url}/v2/nothing")
    assert response.status_code == 404
    assert "error" in response.json()


def test_index_description_and_openapi_schema(server: Server) -> None:
    info = httpx.get(f"{server.url}/v1/index").json()
    document = info["documents"][0]
    assert document["id"] == "gsomia_article.txt"
    listed = httpx.get(f"{server.url}/v1/documents").json()["documents"][0]
    assert {k: document[k] for k in listed} == listed  # one shape, plus this release's aliases
    assert (document["doc_id"], document["sha256"]) == (listed["id"], listed["checksum"])
    assert info["chunk_count"] > 0
    assert info["models"] == {"embedding": "all-MiniLM-L6-v2",
                              "generator": "qwen2.5-coder-0.5b-instruct"}
    schema = httpx.get(f"{server.url}/schema/openapi.json").json()
    assert "/v1/ask" in schema["paths"] and "/v1/chat/completions" in schema["paths"]


def test_a_real_answer_is_exactly_what_the_openapi_schema_describes(server: Server,
                                                                   tmp_path: Path) -> None:
    """Every field of an answer, its citations, passages and timings is named in the schema's
    component for /v1/ask, and nothing else is: a client generated from it parses the answer."""
    schema = httpx.get(f"{server.url}/schema/openapi.json").json()
    reply = schema["paths"]["/v1/ask"]["post"]["responses"]["200"]["content"]["application/json"]
    components = schema["components"]["schemas"]
    answer = httpx.post(f"{server.url}/v1/ask", json={"question": QUESTION}, timeout=120).json()
    assert answer["citations"] and answer["passages"]
    jsonschema.Draft202012Validator(
        {**reply["schema"], "components": schema["components"]}).validate(answer)

    def named(component: str) -> set[str]:
        return set(components[component]["properties"])

    body = components[reply["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(answer) == set(body["properties"]) == set(body["required"])
    shown = {"citations": answer["citations"][0], "passages": answer["passages"][0]}
    for field, value in shown.items():
        assert set(value) == named(body["properties"][field]["items"]["$ref"].rsplit("/", 1)[1])
    assert set(answer["timings"]) == named(body["properties"]["timings"]["$ref"].rsplit("/")[-1])
    client = _generated_client(schema, tmp_path)
    parsed = msgspec.json.decode(json.dumps(answer), type=getattr(client, body["title"]))
    assert msgspec.to_builtins(parsed) == answer


def _generated_client(schema: dict[str, Any], folder: Path) -> ModuleType:
    """Typed records generated from the schema (datamodel-code-generator, msgspec Structs), as
    a client would generate them, imported as a module."""
    from datamodel_code_generator import (
        DataModelType,
        Formatter,
        GenerateConfig,
        InputFileType,
        generate,
    )

    code = generate(json.dumps(schema), config=GenerateConfig(
        input_file_type=InputFileType.OpenAPI, output_model_type=DataModelType.MsgspecStruct,
        formatters=[Formatter.BUILTIN]))
    path = folder / "rag_client.py"
    path.write_text(str(code), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("rag_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["rag_client"] = module
    spec.loader.exec_module(module)
    return module


def test_two_concurrent_requests_both_succeed_and_health_stays_fast(server: Server) -> None:
    results: list[httpx.Response] = []

    def ask(question: str) -> None:
        results.append(httpx.post(f"{server.url}/v1/ask", json={"question": question},
                                  timeout=120))

    expected = {"Who is Taro Kono?": "Defense Minister", "Where does Yuki Asaba teach?": "Doshisha"}
    threads = [threading.Thread(target=ask, args=(q,)) for q in expected]
    for t in threads:
        t.start()
    time.sleep(0.3)  # both are now queued or generating
    health_times = []
    for _ in range(5):
        started = time.perf_counter()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        health_times.append(time.perf_counter() - started)
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200]
    for response in results:  # each answers its own question, not the other's
        question = response.json()["question"]
        assert expected[question] in response.json()["answer"], response.json()
    assert max(health_times) < 0.5, health_times


def test_a_client_that_disconnects_mid_stream_frees_the_model(server: Server) -> None:
    cancelled_before = sum(e.get("event") == "cancelled" for e in server.events())
    with httpx.stream("POST", f"{server.url}/v1/ask/stream", json={"question": QUESTION},
                      timeout=120) as response:
        for line in response.iter_lines():
            if line == "event: delta":
                break  # the model is writing: hang up now
    started = time.perf_counter()
    response = httpx.post(f"{server.url}/v1/ask", json={"question": "Who is Taro Kono?"},
                          timeout=120)
    assert response.status_code == 200
    assert time.perf_counter() - started < 30
    cancelled = sum(e.get("event") == "cancelled" for e in server.events())
    assert cancelled == cancelled_before + 1, "the abandoned generation ran to its end"


def test_metrics_count_the_questions_and_the_log_names_each_request(server: Server) -> None:
    """Three questions (one streamed, one off the documents' subject) show in the counts and
    histograms of /metrics; the access line of a request carries the id its client sent."""
    before = samples(httpx.get(f"{server.url}/metrics").text)
    asked = httpx.post(f"{server.url}/v1/ask", json={"question": QUESTION}, timeout=120,
                       headers={"X-Request-Id": "metrics-test-1"})
    assert asked.headers["x-request-id"] == "metrics-test-1"
    with httpx.stream("POST", f"{server.url}/v1/ask/stream", json={"question": QUESTION},
                      timeout=120) as streamed:
        assert streamed.status_code == 200 and b"event: answer" in streamed.read()
    off_topic = {"question": "What is the boiling point of mercury in kelvin?"}
    assert httpx.post(f"{server.url}/v1/ask", json=off_topic, timeout=120).status_code == 200
    after = samples(httpx.get(f"{server.url}/metrics").text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    answered = grew("rag_answers_total", outcome="answered", gate="")
    refused = sum(v - before.get(k, 0.0) for k, v in after.items()
                  if k[0] == "rag_answers_total" and ("outcome", "refused") in k[1])
    assert answered >= 2 and answered + refused == 3
    assert grew("rag_answer_seconds_count") == 3
    assert grew("rag_first_token_seconds_count") >= 2
    assert grew("rag_answer_confidence_count") == answered
    assert grew("rag_generator_tokens_total", kind="read") > 0
    assert grew("rag_http_requests_total", method="POST", route="/v1/ask", status="200") == 2
    assert grew("rag_http_requests_total", method="POST", route="/v1/ask/stream",
                status="200") == 1
    assert after[("rag_slots_busy", ())] == 0 and after[("rag_requests_waiting", ())] == 0
    lines = [e for e in server.events() if e.get("request_id") == "metrics-test-1"]
    assert any(e.get("route") == "/v1/ask" and e.get("status") == 200 for e in lines), lines
