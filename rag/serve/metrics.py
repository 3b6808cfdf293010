"""What an operator scrapes at ``GET /metrics``, in the Prometheus text format.

One registry per service (a test process may run several apps): HTTP requests by route and
status, answer latency and time to the first streamed text, answers and refusals by the gate that
refused, the confidence of answers given, tokens read and written by the generator, upload jobs
by outcome; and, read at scrape time, the requests waiting for a model slot, the slots busy and
the uploads waiting to be indexed or being indexed.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from rag.types import Answer

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: a retrieval-only refusal takes tens of milliseconds, a long answer on 2 cores tens of
# seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0)
CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class Metrics:
    def __init__(self, waiting: Callable[[], int], busy_slots: Callable[[], int],
                 pending_uploads: Callable[[], int], running_uploads: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("rag_http_requests", "HTTP requests answered, by route and status",
                                ["method", "route", "status"], registry=registry)
        self.request_seconds = Histogram("rag_http_request_seconds",
                                         "Time from a request to the end of its response",
                                         ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.answer_seconds = Histogram("rag_answer_seconds",
                                        "Time to answer or refuse a question, from its turn "
                                        "at the model", buckets=LATENCY_BUCKETS,
                                        registry=registry)
        self.first_token_seconds = Histogram("rag_first_token_seconds",
                                             "Time from a question's turn to its first answer "
                                             "text", buckets=LATENCY_BUCKETS, registry=registry)
        self.answers = Counter("rag_answers", "Questions answered or refused; a refusal by the "
                               "gate that refused it", ["outcome", "gate"], registry=registry)
        self.confidence = Histogram("rag_answer_confidence",
                                    "The estimated P(right) of the answers given",
                                    buckets=CONFIDENCE_BUCKETS, registry=registry)
        self.tokens = Counter("rag_generator_tokens", "Prompt tokens read and answer tokens "
                              "written by the generator", ["kind"], registry=registry)
        self.uploads = Counter("rag_upload_jobs", "Upload jobs by outcome (refused: the queue "
                               "was full)", ["outcome"], registry=registry)
        for name, text, read in (
            ("rag_requests_waiting", "Questions admitted and waiting for a model slot", waiting),
            ("rag_slots_busy", "Model slots answering a question now", busy_slots),
            ("rag_uploads_waiting", "Upload jobs waiting to be indexed", pending_uploads),
            ("rag_uploads_running", "Upload jobs being indexed now (0 or 1)", running_uploads),
        ):
            Gauge(name, text, registry=registry).set_function(read)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def answer(self, answer: Answer, first_text_s: float | None) -> None:
        self.answer_seconds.observe(answer.timings.total_s)
        if first_text_s is not None:
            self.first_token_seconds.observe(first_text_s)
        if answer.refused:
            self.answers.labels("refused", refusing_gate(answer.refusal_reason)).inc()
        else:
            self.answers.labels("answered", "").inc()
        if answer.confidence is not None:
            self.confidence.observe(answer.confidence)
        if answer.trace is not None:
            self.tokens.labels("read").inc(answer.trace.prompt_tokens)
            self.tokens.labels("written").inc(answer.trace.completion_tokens)

    def upload(self, outcome: str) -> None:
        self.uploads.labels(outcome).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def refusing_gate(reason: str) -> str:
    """The gate's name a refusal reason starts with ("gate: why"): a label of few values."""
    return reason.split(":", 1)[0].strip() or "unknown"
