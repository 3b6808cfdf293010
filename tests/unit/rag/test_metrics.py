"""What an operator sees without a model: /metrics in the Prometheus text format, request ids in
responses and log lines."""

import io
import json
import logging
from pathlib import Path

import pytest
from litestar.testing import TestClient

from rag.serve import app as http_app
from rag.serve import logs
from rag.serve.metrics import Metrics, refusing_gate
from rag.serve.service import Service
from rag.settings import LOG_FORMATS, Settings
from rag.types import Answer, Timings, Trace
from tests.servers import samples


def _answer(refused: bool, reason: str = "", confidence: float | None = None) -> Answer:
    trace = Trace("q", 0.5, prompt_tokens=300, completion_tokens=7)
    return Answer("q", "the documents do not say" if refused else "Motegi", refused, [], [],
                  "model", "prompt", Timings(total_s=2.5), confidence, reason, trace)


def test_answers_refusals_by_gate_tokens_and_gauges_are_counted() -> None:
    metrics = Metrics(waiting=lambda: 3, busy_slots=lambda: 1, pending_uploads=lambda: 2,
                      running_uploads=lambda: 1)
    metrics.answer(_answer(False, confidence=0.82), first_text_s=0.4)
    metrics.answer(_answer(True, "relevance: best passage similarity 0.02 < 0.05"), None)
    metrics.answer(_answer(True, "confidence: P(right) 0.31 < 0.5 (fitted)"), None)
    metrics.upload("refused")
    got = samples(metrics.exposition().decode())
    assert got[("rag_answers_total", (("gate", ""), ("outcome", "answered")))] == 1
    assert got[("rag_answers_total", (("gate", "relevance"), ("outcome", "refused")))] == 1
    assert got[("rag_answers_total", (("gate", "confidence"), ("outcome", "refused")))] == 1
    assert got[("rag_answer_seconds_count", ())] == 3
    assert got[("rag_answer_seconds_bucket", (("le", "2.0"),))] == 0
    assert got[("rag_answer_seconds_bucket", (("le", "3.0"),))] == 3
    assert got[("rag_first_token_seconds_count", ())] == 1
    assert got[("rag_answer_confidence_bucket", (("le", "0.8"),))] == 0
    assert got[("rag_answer_confidence_bucket", (("le", "0.9"),))] == 1
    assert got[("rag_generator_tokens_total", (("kind", "read"),))] == 900
    assert got[("rag_generator_tokens_total", (("kind", "written"),))] == 21
    assert got[("rag_upload_jobs_total", (("outcome", "refused"),))] == 1
    assert got[("rag_requests_waiting", ())] == 3
    assert got[("rag_slots_busy", ())] == 1
    assert got[("rag_uploads_waiting", ())] == 2
    assert got[("rag_uploads_running", ())] == 1


def test_a_refusal_reason_is_labelled_by_its_gate_only() -> None:
    assert refusing_gate("support: no cited sentence holds the answer") == "support"
    assert refusing_gate("") == "unknown"


@pytest.mark.parametrize(("sent", "kept"), [("abc-123", True), ("trace:7.x_9", True),
                                            ("a" * 65, False), ("a b", False),
                                            ("id\r\nX-Evil: 1", False), ("", False), (None, False)])
def test_a_clients_request_id_is_kept_only_when_short_and_plain(sent: str | None,
                                                               kept: bool) -> None:
    rid = logs.request_id(sent)
    assert (rid == sent) is kept
    if not kept:
        assert len(rid) == 32 and int(rid, 16) >= 0


@pytest.mark.parametrize("log_format", LOG_FORMATS)
def test_every_log_line_of_a_request_names_it(log_format: str) -> None:
    out = io.StringIO()
    log = logging.getLogger(f"rag.test.{log_format}")
    log.addHandler(logs.handler(log_format, out))
    log.setLevel(logging.INFO)
    token = logs.REQUEST_ID.set("req-1")
    try:
        log.info(json.dumps({"event": "cancelled", "after_s": 1.5}))
        log.info("plain words")
    finally:
        logs.REQUEST_ID.reset(token)
    log.info(json.dumps({"event": "ready"}))
    event, plain, outside = out.getvalue().splitlines()
    assert json.loads(event)["request_id"] == "req-1"
    assert json.loads(event)["event"] == "cancelled"
    if log_format == "json":
        assert json.loads(plain)["message"] == "plain words"
        assert json.loads(plain)["request_id"] == "req-1"
        assert json.loads(outside)["request_id"] is None
        assert json.loads(outside)["level"] == "info"
    else:
        assert plain == "[req-1] plain words"
        assert json.loads(outside) == {"event": "ready"}


def test_the_service_returns_request_ids_and_counts_requests_by_route(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Service, "load", lambda self: None)  # stays "loading": no model
    app = http_app.create_app(Settings(index_dir=tmp_path / "index"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        sent = client.get("/healthz", headers={"X-Request-Id": "probe-1"})
        assert sent.headers["x-request-id"] == "probe-1"
        made = client.get("/v1/documents/jobs/abc")  # no such job
        assert made.status_code == 404 and len(made.headers["x-request-id"]) == 32
        scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    got = samples(scraped.text)
    assert got[("rag_http_requests_total",
                (("method", "GET"), ("route", "/healthz"), ("status", "200")))] == 1
    # The route's template, not the path: a label of few values whatever clients send.
    assert got[("rag_http_requests_total", (("method", "GET"),
                ("route", "/v1/documents/jobs/{job_id}"), ("status", "404")))] == 1
    assert got[("rag_slots_busy", ())] == 0
