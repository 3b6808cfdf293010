"""A bounded load test and fuzzing of the real service (small model): 200 requests from 32
clients end with no error but deliberate 503s, no crash, memory back near its warm level and
the service still answering right; schemathesis finds no 5xx and no response off the schema."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, islice
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from rag.settings import Settings
from tests.servers import Server, running_server

pytestmark = pytest.mark.llm
QUESTIONS = [
    "Who is Japan's foreign minister quoted in the article?",
    "Where did Motegi speak to reporters?",
    "What is the population of Seoul?",
    "Who is Taro Kono?",
    "When does GSOMIA expire?",
]


@pytest.fixture(scope="module")
def server(settings: Settings, article_index: object,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(settings, tmp_path_factory.mktemp("load") / "service.log") as running:
        yield running


def _ask(url: str, question: str) -> int:
    try:
        return httpx.post(f"{url}/v1/ask", json={"question": question}, timeout=300).status_code
    except httpx.TransportError:
        return -1  # a dropped connection counts as an error


def test_two_hundred_requests_from_32_clients(server: Server) -> None:
    with ThreadPoolExecutor(max_workers=32) as pool:
        # Warm: every code path used, the worker threads and their buffers made, once.
        assert 200 in set(pool.map(lambda q: _ask(server.url, q), islice(cycle(QUESTIONS), 32)))
        warm = server.rss_mb()
        statuses = list(pool.map(lambda q: _ask(server.url, q), islice(cycle(QUESTIONS), 200)))
    assert server.process.poll() is None, "the service crashed"
    errors = [s for s in statuses if s not in {200, 503}]
    assert not errors, errors
    assert statuses.count(200) >= 16  # the queue's worth at least was answered
    time.sleep(1)
    after = server.rss_mb()
    print(f"load: {statuses.count(200)} answered, {statuses.count(503)} turned away (503); "
          f"RSS {warm:.0f} MB warm, {after:.0f} MB after")  # shown with pytest -s
    assert after <= warm * 1.05, f"RSS {warm:.0f} MB warm, {after:.0f} MB after the load"
    answer = httpx.post(f"{server.url}/v1/ask", json={"question": QUESTIONS[0]}, timeout=120)
    assert answer.status_code == 200 and "Motegi" in answer.json()["answer"]


def test_fuzzed_requests_get_no_5xx_and_match_the_schema(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/ask", "/v1/chat/completions", "/readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            # No 5xx, and every response as the schema documents it (status and body). Schema-
            # valid questions may still be refused with a 400 (too long for the context).
            case.call_and_validate(base_url=server.url, timeout=120, checks=[
                checks.not_a_server_error, checks.response_schema_conformance,
                openapi_checks.status_code_conformance])

        check()
