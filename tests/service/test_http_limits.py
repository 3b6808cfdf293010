"""The service under bad input and pressure, on the real server and the small model: API keys,
CORS, a full queue, bodies that are too deep, too big or malformed, questions too long for the
context, clients that go away, requests that run out of time (any question and top_k: the
property test in tests/service/test_load.py)."""

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from rag.settings import Settings
from tests.servers import Server, running_server

pytestmark = pytest.mark.llm

KEY = "beta-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTION = "Who is Japan's foreign minister quoted in the article?"
# top_k 20 makes the model read about 1,600 tokens: several seconds on the small model, long
# enough to be sure a client leaves while it is still working.
SLOW = {"question": "What did Taro Kono and Toshimitsu Motegi say about GSOMIA?", "top_k": 20}


@pytest.fixture(scope="module")
def keyed(settings: Settings, article_index: object,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("keyed") / "service.log"
    with running_server(settings, log, RAG_API_KEYS=f"alpha-key,{KEY}", RAG_MAX_QUEUE="1",
                        RAG_CORS_ORIGINS="http://allowed.test") as server:
        yield server


def _count(server: Server, event: str) -> int:
    return sum(e.get("event") == event for e in server.events())


def test_every_route_but_probes_and_the_page_needs_a_key(keyed: Server) -> None:
    for method, path in [("GET", "/v1/index"), ("POST", "/v1/ask"), ("POST", "/v1/ask/stream"),
                         ("POST", "/v1/chat/completions"), ("POST", "/v1/index/reload"),
                         ("GET", "/schema/openapi.json")]:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}):
            response = httpx.request(method, keyed.url + path, headers=headers,
                                     json={"question": QUESTION}, timeout=30)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.json()["error"]["type"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    for path in ("/healthz", "/readyz", "/", "/static/app.js"):
        assert httpx.get(keyed.url + path).status_code == 200, path
    assert httpx.get(f"{keyed.url}/v1/index", headers=AUTH).status_code == 200
    assert httpx.get(f"{keyed.url}/v1/index",
                     headers={"Authorization": "Bearer alpha-key"}).status_code == 200


def test_the_openai_client_sends_its_key(keyed: Server) -> None:
    client = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY)
    reply = client.chat.completions.create(model="local",
                                           messages=[{"role": "user", "content": QUESTION}])
    assert "Motegi" in (reply.choices[0].message.content or "")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="nope").chat.completions.create(
            model="local", messages=[{"role": "user", "content": QUESTION}])


def test_a_foreign_host_or_page_is_refused_even_with_a_key(keyed: Server) -> None:
    """DNS rebinding names another host; a page the user visits sends its own Origin."""
    port = keyed.url.rsplit(":", 1)[1]
    refused = [
        httpx.get(f"{keyed.url}/v1/index", headers=AUTH | {"Host": f"evil.example:{port}"}),
        httpx.post(f"{keyed.url}/v1/documents", headers=AUTH | {"Origin": "http://evil.example"},
                   files={"file": ("poison.txt", b"Seoul moved to Mars.")}),
        httpx.post(f"{keyed.url}/v1/index/reload", headers={"Origin": "http://evil.example"}),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["type"] == "forbidden"
    own = httpx.post(f"{keyed.url}/v1/ask", json={"question": ""},
                     headers=AUTH | {"Origin": f"http://127.0.0.1:{port}"})
    assert own.status_code == 400, own.text  # past the checks, to the empty question
    assert httpx.get(f"{keyed.url}/healthz", headers={"Host": "evil.example"}).status_code == 200


def test_cors_allows_only_the_configured_origins(keyed: Server) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(f"{keyed.url}/v1/ask", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})

    allowed = preflight("http://allowed.test")
    assert allowed.status_code == 204 or allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://allowed.test"
    assert "access-control-allow-origin" not in preflight("http://evil.test").headers


def test_a_full_queue_turns_a_stream_away_before_it_starts(keyed: Server) -> None:
    busy = threading.Thread(target=httpx.post, args=(f"{keyed.url}/v1/ask",),
                            kwargs={"json": SLOW, "headers": AUTH, "timeout": 120})
    busy.start()
    try:
        time.sleep(0.5)  # the only place in the queue is taken
        for path in ("/v1/ask/stream", "/v1/ask", "/v1/chat/completions"):
            body = {"question": QUESTION, "messages": [{"role": "user", "content": QUESTION}],
                    "stream": True}
            response = httpx.post(keyed.url + path, json=body, headers=AUTH, timeout=30)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["retry-after"] == "2"
            assert response.headers["content-type"].startswith("application/json")
            assert "waiting for the model" in response.json()["error"]["message"]
    finally:
        busy.join()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"[" * 5000 + b"]" * 5000, 400, "nested too deeply"),
        (b'{"question": "' + b"a" * 70_000 + b'"}', 413, "RAG_MAX_BODY_BYTES"),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]
                     }).encode(), 400, "string 'text'"),
    ],
)
def test_bad_bodies_get_a_clean_4xx(keyed: Server, body: bytes, status: int, says: str) -> None:
    path = "/v1/chat/completions" if b"messages" in body else "/v1/ask"
    response = httpx.post(keyed.url + path, content=body, timeout=60,
                          headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]


@pytest.mark.parametrize("top_k", [4, 20])
def test_a_long_question_in_japanese_is_answered_or_refused_cleanly(keyed: Server,
                                                                    top_k: int) -> None:
    question = "日本の外務大臣は誰ですか。なぜ協定を延長したのですか。" * 70  # 1,960 characters
    response = httpx.post(f"{keyed.url}/v1/ask", json={"question": question, "top_k": top_k},
                          headers=AUTH, timeout=120)
    assert response.status_code in {200, 400}, response.text
    if response.status_code == 400:
        assert "RAG_N_CTX" in response.json()["error"]["message"]


def test_a_client_leaving_a_non_streaming_request_frees_the_model(keyed: Server) -> None:
    before = _count(keyed, "cancelled")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{keyed.url}/v1/ask", json=SLOW, headers=AUTH, timeout=1.5)
    started = time.perf_counter()
    while (answer := httpx.post(f"{keyed.url}/v1/ask", json={"question": QUESTION},
                                headers=AUTH, timeout=120)).status_code == 503:
        time.sleep(0.1)  # the one place in the queue is still the leaver's, for one step
    assert answer.status_code == 200
    assert _count(keyed, "cancelled") == before + 1, "the abandoned request ran to its end"
    assert time.perf_counter() - started < 30


def test_a_request_out_of_time_gets_504_and_frees_the_model(
    settings: Settings, article_index: object, tmp_path: Path
) -> None:
    log = tmp_path / "service.log"
    with running_server(settings, log, RAG_REQUEST_TIMEOUT_S="0.5") as server:
        for _ in range(2):  # the second is not stuck behind the first
            started = time.perf_counter()
            response = httpx.post(f"{server.url}/v1/ask", json=SLOW, timeout=60)
            assert response.status_code == 504, response.text
            assert "RAG_REQUEST_TIMEOUT_S" in response.json()["error"]["message"]
            assert time.perf_counter() - started < 10
        assert _count(server, "timeout") == 2
