"""A bounded load test and fuzzing of the real service (small model): questions from more clients
than the queue holds, waiting out each 503 as told (Retry-After), are all answered, each one
right, with no crash and memory back near its warm level (a short check in `make test`, the long
load in `make soak`); questions drawn by hypothesis get an answer or a clean 4xx; schemathesis
finds no 5xx and no response off the schema (20 draws each in `make test`, 100 in `make soak`)."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, strategies
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from index_build.build import build_index
from rag.retrieval.embedder import Embedder
from rag.settings import Settings
from tests.conftest import make_settings
from tests.servers import Server, running_server

pytestmark = pytest.mark.llm
# Each question and what its answer must say (None: refused).
QUESTIONS: dict[str, str | None] = {
    "Who is Japan's foreign minister quoted in the article?": "Motegi",
    "Where did Motegi speak to reporters?": "Nagoya",
    "What is the population of Seoul?": None,
    "Which news agency quoted Kim You-geun?": "Yonhap",
    "In which month did Seoul announce it would scrap GSOMIA?": "August",
}
NOTE = ("The Varn ferry leaves Sill harbour at seven each morning. Its captain, Ada Holt, has "
        "run it since 2014. Tickets cost four crowns.\n")
# A load: clients asking at once against a queue of `queue` waiting requests, `questions` asked
# after a warm-up of as many as there are clients. The check of every `make test` overfills the
# shared article service's queue of 4 from 8 clients (20 questions, about 2 minutes at 4 s each);
# the soak (`make soak`) the default queue of 16 from 32 clients, long enough to keep it full for
# minutes and under 10 there (an AVX2 AMD EPYC, 2026-12-01; 200 took over 20 minutes). The full
# load is `python -m bench --only service`.


@dataclass(frozen=True)
class Load:
    clients: int
    queue: int
    questions: int


CHECK_LOAD, SOAK_LOAD = Load(clients=8, queue=4, questions=12), Load(32, 16, 96)
# How long a client keeps waiting out 503s for one question before it counts as lost. Turns are
# not first-come-first-served (whoever retries first after a slot frees gets it), so a client
# can lose many rounds in a row: the limit is in time, above the whole test's length.
PATIENCE_S = 1800


@dataclass
class Outcome:
    question: str
    status: int  # the last status: 200 once answered; -1 for a dropped connection
    turned_away: int  # 503s waited out before it
    body: dict[str, Any]


def _ask(url: str, question: str) -> Outcome:
    """Ask as a well-behaved client: after a 503, wait as Retry-After says, then ask again."""
    give_up = time.monotonic() + PATIENCE_S
    tries = 0
    while True:
        try:
            response = httpx.post(f"{url}/v1/ask", json={"question": question}, timeout=300)
        except httpx.TransportError:
            return Outcome(question, -1, tries, {})
        if response.status_code != 503 or time.monotonic() > give_up:
            return Outcome(question, response.status_code, tries, response.json())
        tries += 1
        time.sleep(float(response.headers["retry-after"]))


def _right(outcome: Outcome) -> bool:
    expected = QUESTIONS[outcome.question]
    if expected is None:
        return bool(outcome.body["refused"])
    return not outcome.body["refused"] and expected in outcome.body["answer"]


def test_questions_from_clients_overfilling_the_queue_are_all_answered_right(
    article_server: Server
) -> None:
    """The check: the shared article service, whose queue holds CHECK_LOAD.queue."""
    _answered_right_under(article_server, CHECK_LOAD)


@pytest.mark.soak
def test_questions_from_clients_overfilling_the_default_queue_are_all_answered_right(
    settings: Settings, article_index: object, tmp_path: Path
) -> None:
    # A deadline no queued question reaches on a slow machine (16 waiting, a few seconds each):
    # this test is of answers under load; tests/service/test_http_limits.py has the deadline's 504.
    with running_server(settings, tmp_path / "service.log", RAG_REQUEST_TIMEOUT_S="240",
                        RAG_MAX_QUEUE=str(SOAK_LOAD.queue)) as server:
        _answered_right_under(server, SOAK_LOAD)


def _answered_right_under(server: Server, load: Load) -> None:
    outcomes, warm, after = _under_load(server, load)
    answered = [o for o in outcomes if o.status == 200]
    turned_away = sum(o.turned_away for o in outcomes)
    print(f"load: {len(answered)} of {load.questions} answered after {turned_away} 503s waited "
          f"out (at most {max(o.turned_away for o in outcomes)} for one question); "
          f"RSS {warm:.0f} MB warm, {after:.0f} MB after")  # shown with pytest -s
    assert len(answered) == load.questions, sorted({o.status for o in outcomes})
    assert turned_away > 0, f"{load} never filled the queue: no load was applied"
    wrong = [(o.question, o.body["answer"]) for o in answered if not _right(o)]
    assert not wrong, wrong
    assert after <= warm * 1.05, f"RSS {warm:.0f} MB warm, {after:.0f} MB after the load"


def _under_load(server: Server, load: Load) -> tuple[list[Outcome], float, float]:
    """The outcomes of ``load`` after a warm-up, and the service's RSS before and after (MB)."""
    with ThreadPoolExecutor(max_workers=load.clients) as pool:
        # Warm: every code path used, the worker threads and their buffers made, once.
        warmup = list(pool.map(lambda q: _ask(server.url, q),
                               islice(cycle(QUESTIONS), load.clients)))
        assert {o.status for o in warmup} == {200}
        warm = server.rss_mb()
        outcomes = list(pool.map(lambda q: _ask(server.url, q),
                                 islice(cycle(QUESTIONS), load.questions)))
    assert server.process.poll() is None, "the service crashed"
    time.sleep(1)
    return outcomes, warm, server.rss_mb()


@pytest.fixture(scope="module")
def small(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A service over a three-sentence document, answering in at most 16 tokens: the property
    and fuzz tests send hundreds of valid questions, and here each costs the model little."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "note.txt").write_text(NOTE, encoding="utf-8")
    settings = make_settings(folder / "index")
    build_index(settings, [folder / "note.txt"], embedder)
    with running_server(settings, folder / "service.log", RAG_MAX_ANSWER_TOKENS="16") as running:
        yield running


# Examples drawn per property: a sample in every `make test`, the full draw in `make soak`.
DRAWS = pytest.mark.parametrize("draws", [
    20, pytest.param(100, marks=pytest.mark.soak)], ids=["check", "soak"])


@DRAWS
def test_any_question_and_top_k_in_range_get_an_answer_or_a_clean_4xx(
    small: Server, draws: int
) -> None:
    @given(question=strategies.text(min_size=1, max_size=2000),
           top_k=strategies.integers(1, 20))
    @hypothesis.settings(max_examples=draws, deadline=None, derandomize=True)
    def asked(question: str, top_k: int) -> None:
        response = httpx.post(f"{small.url}/v1/ask",
                              json={"question": question, "top_k": top_k}, timeout=120)
        assert response.status_code in {200, 400}, response.text
        body = response.json()
        if response.status_code == 200:
            assert body["refused"] or body["citations"], body
            assert body["refused"] == (body["confidence"] is None)
        else:
            assert body["error"]["message"]

    asked()


@DRAWS
def test_fuzzed_requests_get_no_5xx_and_match_the_schema(small: Server, draws: int) -> None:
    schema = schemathesis.openapi.from_url(f"{small.url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/ask", "/v1/chat/completions", "/readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=draws, deadline=None, derandomize=True,
                             suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            # No 5xx, and every response as the schema documents it (status and body). Schema-
            # valid questions may still be refused with a 400 (too long for the context).
            case.call_and_validate(base_url=small.url, timeout=120, checks=[
                checks.not_a_server_error, checks.response_schema_conformance,
                openapi_checks.status_code_conformance])

        check()
