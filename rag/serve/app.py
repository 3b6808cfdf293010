"""The HTTP service: a thin litestar layer over ``Pipeline.ask`` (state in ``rag.serve.service``).

Every question route admits the request at the model gate before its response starts (a full
queue is a 503 with Retry-After, streams included), then answers in a worker thread under a
``Guard``: the client going away (a stream consumer stopping, or a non-streaming client
disconnecting) or the request timeout stops the generation before its next llama.cpp call.
Errors become JSON in one place (``rag.serve.errors``); API keys are checked in one place
(``rag.serve.auth``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from functools import partial
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.params import JSONBody
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from rag.guard import Guard
from rag.retrieval.store import ListedDocument
from rag.serve import auth, logs, metrics, openai_api
from rag.serve.admission import Admission, ModelGate
from rag.serve.documents import MAX_FORM_PARTS, document_routes
from rag.serve.errors import ERROR_RESPONSES, error_body, handle_error, without_server_paths
from rag.serve.openai_api import ChatCompletion, ChatRequest, sse
from rag.serve.page import add_web_page
from rag.serve.service import Service, ServiceDep
from rag.settings import Settings
from rag.types import Answer, AnswerBody, Question, Turn

log = logging.getLogger("rag.http")
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class HistoryTurn(msgspec.Struct):
    role: str  # "user" or "assistant"
    content: str


class AskRequest(msgspec.Struct):
    question: str
    top_k: int | None = None
    # Earlier turns, oldest first: a follow-up question is rewritten to stand alone.
    history: list[HistoryTurn] = msgspec.field(default_factory=list)
    # This request's operating point: refuse an answer whose P(right) is below it.
    min_confidence: float | None = None

    def checked(self, settings: Settings) -> Question:
        turns = [Turn(t.role, t.content) for t in self.history]
        return Question.checked(self.question, settings, self.top_k, turns, self.min_confidence)


def provide_service(state: State) -> Service:
    service: Service = state.service
    return service


# ---- routes ---------------------------------------------------------------------------------


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", sync_to_thread=False, responses=ERROR_RESPONSES)
def readyz(service: ServiceDep) -> Response[dict[str, Any]]:
    if service.pipeline is not None:
        return Response({"status": "ready"}, status_code=200)
    status = "failed" if service.load_error else "loading"
    error = service.load_error and without_server_paths(service.load_error)
    return Response({"status": status, "error": error}, status_code=503)


class IndexedDocument(ListedDocument, kw_only=True):
    """A document as ``/v1/documents`` shows it, with the keys ``/v1/index`` showed before the
    shapes were one (``doc_id`` = ``id``, ``sha256`` = ``checksum``, ``path``, ``chars``): kept
    for one release, then dropped."""

    doc_id: str
    sha256: str
    path: str
    chars: int


class IndexInfo(msgspec.Struct):
    """``GET /v1/index``: the loaded index, how it was built, the models that read it."""

    documents: list[IndexedDocument]
    chunk_count: int
    fingerprint: str
    created_at: str
    build_seconds: float
    dense_index: str
    chunking: dict[str, Any]  # max_tokens, overlap_tokens, encoding
    models: dict[str, str]  # embedding, generator
    prompt: str
    prompt_mode: str


@get("/v1/index", sync_to_thread=False, responses=ERROR_RESPONSES)
def index_info(service: ServiceDep) -> IndexInfo:
    pipeline = service.ready()
    manifest = pipeline.index.manifest
    return IndexInfo(
        documents=[IndexedDocument(**msgspec.structs.asdict(d.listing()), doc_id=d.doc_id,
                                   sha256=d.sha256, path=without_server_paths(d.path),
                                   chars=d.chars)
                   for d in manifest.documents],
        chunk_count=manifest.chunk_count,
        fingerprint=manifest.fingerprint,
        created_at=manifest.created_at,
        build_seconds=manifest.build_seconds,
        dense_index=manifest.dense_index,
        chunking={"max_tokens": manifest.chunk_tokens, "overlap_tokens": manifest.chunk_overlap,
                  "encoding": manifest.token_encoding},
        models={"embedding": manifest.embed_model, "generator": pipeline.model_name},
        prompt=pipeline.prompt_version,
        prompt_mode=pipeline.drafter.prompt.mode,
    )


@post("/v1/index/reload", status_code=200, responses=ERROR_RESPONSES, opt=auth.ADMIN)
async def reload_index(service: ServiceDep) -> dict[str, Any]:
    """Swap in the index now at the configured path, between requests."""
    return await anyio.to_thread.run_sync(service.reload)


@post("/v1/ask", status_code=200, responses=ERROR_RESPONSES)
async def ask(
    data: JSONBody[AskRequest], service: ServiceDep, request: Request[Any, Any, Any]
) -> AnswerBody:
    question, admission = _admitted(service, data.checked)
    return (await _answered(service, question, admission, request)).body()


@post("/v1/ask/stream", status_code=200, responses=ERROR_RESPONSES)
async def ask_stream(
    data: JSONBody[AskRequest], service: ServiceDep, request: Request[Any, Any, Any]
) -> Stream:
    question, admission = _admitted(service, data.checked)

    async def events() -> AsyncIterator[bytes]:
        yield b": answering\n\n"  # first byte at once: time to first byte never waits for the model
        async for kind, payload in _events(service, question, admission, request):
            if kind == "passages":
                shown = [p.body() for p in payload]
                yield sse("passages", {"passages": msgspec.to_builtins(shown)})
            elif kind == "delta":
                yield sse("delta", {"text": payload})
            elif kind == "answer":
                yield sse("answer", payload.to_dict())
            else:
                yield sse("error", error_body(payload)[1])

    return _stream(events(), admission)


@post("/v1/chat/completions", status_code=200, responses=ERROR_RESPONSES)
async def chat_completions(
    data: JSONBody[ChatRequest], service: ServiceDep, request: Request[Any, Any, Any]
) -> ChatCompletion | Stream:
    question, admission = _admitted(service, partial(openai_api.question, data))
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if not data.stream:
        answer = await _answered(service, question, admission, request)
        return openai_api.completion(completion_id, answer)

    async def chunks() -> AsyncIterator[bytes]:
        model = service.ready().model_name
        yield openai_api.chunk(completion_id, model, {"role": "assistant", "content": ""})
        async for kind, payload in _events(service, question, admission, request):
            if kind == "answer":
                # Only checked text reaches the client: a refusal cannot be unsent.
                yield openai_api.chunk(completion_id, model, {"content": payload.answer})
                yield openai_api.chunk(completion_id, model, {}, finish_reason="stop",
                                          extra=openai_api.answer_extras(payload))
            elif kind == "error":
                yield sse(None, {"error": error_body(payload)[1]["error"]})
        yield b"data: [DONE]\n\n"

    return _stream(chunks(), admission)


# ---- one path for every question: admitted, answered as a stream of events -----------------


def _admitted(service: Service,
              checked: Callable[[Settings], Question]) -> tuple[Question, Admission]:
    """Every question route's start: the service is ready, the question valid, a place taken
    at the model gate (a full queue is a 503 before any response starts, streams included)."""
    service.ready()
    question = checked(service.settings)
    return question, service.gate.admit()


async def _answered(service: Service, question: Question, admission: Admission,
                    request: Request[Any, Any, Any]) -> Answer:
    """A plain route's answer: the question's events drained, the client leaving (the next ASGI
    message after the body) stopping the generation like a stream consumer stopping."""
    async with cancel_on_disconnect(request) as cancelled, \
            aclosing(_events(service, question, admission, request, cancelled)) as events:
        async for kind, payload in events:
            if kind == "error":
                raise payload
            if kind == "answer":
                answer: Answer = payload
                return answer
    raise AssertionError("a question's events end with its answer or its error")


def _stream(body: AsyncIterator[bytes], admission: Admission) -> Stream:
    # The admission is released when the answer is done; the background task also releases it
    # when the client left before the stream even started (release happens once).
    return Stream(body, media_type="text/event-stream", headers=_STREAM_HEADERS,
                  background=BackgroundTask(admission.release))


async def _events(
    service: Service, question: Question, admission: Admission,
    request: Request[Any, Any, Any], cancelled: threading.Event | None = None,
) -> AsyncGenerator[tuple[str, Any], None]:
    """Run one question in a worker thread; yield ("passages"|"delta"|"answer"|"error", payload).

    If the consumer stops (a streaming client disconnected) or ``cancelled`` is set, the
    generation stops before its next llama.cpp call. The answer is noted for the access log.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    guard = Guard(cancelled or threading.Event(), service.settings.request_timeout_s)

    def emit(kind: str, payload: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))

    async def work() -> None:
        try:
            answer = await service.ask(
                question, admission, guard,
                on_passages=lambda ps: emit("passages", ps),
                on_delta=lambda text: emit("delta", text),
            )
            _note(request, answer)
            emit("answer", answer)
        except Exception as exc:
            emit("error", exc)

    task = asyncio.create_task(work())
    try:
        while True:
            kind, payload = await queue.get()
            yield kind, payload
            if kind in {"answer", "error"}:
                break
    finally:
        assert guard.cancelled is not None
        guard.cancelled.set()
        if task.done():
            task.result()


@asynccontextmanager
async def cancel_on_disconnect(request: Request[Any, Any, Any]) -> AsyncIterator[threading.Event]:
    """An event set when the client of a (non-streaming) request disconnects: the body has been
    read, so the next ASGI message can only be the disconnect."""
    cancelled = threading.Event()

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancelled.set()

    watcher = asyncio.create_task(watch())
    try:
        yield cancelled
    finally:
        watcher.cancel()


def _note(request: Request[Any, Any, Any], answer: Answer) -> None:
    """What the access log line reports about the answer."""
    request.scope.setdefault("state", {})["rag"] = {
        "refused": answer.refused, "citations": len(answer.citations),
    }


# ---- before every request: the key, then the body's media type ------------------------------

# Bodies are JSON, but for the routes listed here.
BODY_TYPES = {"/v1/documents": "multipart/form-data"}


def guard_request(keys: auth.Keys, hosts: frozenset[str],
                  origins: frozenset[str]) -> Callable[[Request[Any, Any, Any]], None]:
    def before(request: Request[Any, Any, Any]) -> None:
        path, host = request.url.path, request.headers.get("host")
        admin = bool(request.route_handler.opt.get("admin"))
        auth.check_host(path, host, hosts)
        # Without keys, nothing but the service's own page may change its documents.
        trusted = origins if keys.required or not admin else frozenset()
        auth.check_origin(request.method, host, request.headers.get("origin"), trusted)
        auth.check(path, request.headers.get("authorization"), keys, admin)
        has_body = request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers)
        if request.method == "POST" and has_body:
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            expected = BODY_TYPES.get(request.url.path, "application/json")
            if media_type != expected:
                raise HTTPException(
                    status_code=415,
                    detail=f"send the body as {expected} (got {media_type or 'no content type'})",
                )

    return before


# ---- per request: its id, one structured log line, its metrics ------------------------------


def access_log(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        rid = logs.request_id(_header(scope, b"x-request-id"))
        token = logs.REQUEST_ID.set(rid)

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive, record)
        finally:
            latency = time.perf_counter() - started
            rag_state = scope.get("state", {}).get("rag", {})
            log.info(json.dumps({
                "method": scope.get("method"), "route": scope["path"], "status": status,
                "latency_s": round(latency, 3),
                "refused": rag_state.get("refused"), "citations": rag_state.get("citations"),
            }))
            service: Service = scope["app"].state.service
            # The route's template ("/v1/documents/{doc_id:str}"), not the path: few label values.
            route = scope.get("path_template") or scope["path"]
            service.metrics.request(scope.get("method", ""), route, status, latency)
            logs.REQUEST_ID.reset(token)

    return middleware


def _header(scope: Scope, name: bytes) -> str | None:
    value = next((v for k, v in scope.get("headers", []) if k.lower() == name), None)
    return value.decode("latin-1") if value is not None else None


@get("/metrics", sync_to_thread=False, include_in_schema=False)
def prometheus_metrics(service: ServiceDep) -> Response[bytes]:
    """Counts and histograms in the Prometheus text format (rag.serve.metrics)."""
    return Response(service.metrics.exposition(), media_type=metrics.CONTENT_TYPE)


# ---- the app --------------------------------------------------------------------------------


def create_app(settings: Settings) -> Litestar:
    service = Service(settings=settings, gate=ModelGate(settings.max_queue, settings.parallel))
    keys = auth.load_keys(settings)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        threading.Thread(target=service.load, name="rag-load", daemon=True).start()
        stop_watching = threading.Event()
        if settings.index_watch_s:
            threading.Thread(target=service.watch_index, args=(stop_watching,),
                             name="rag-watch", daemon=True).start()
        loop = asyncio.get_running_loop()
        # Signals reach the main thread only; an app run elsewhere (a test client) has no SIGHUP.
        hangup = threading.current_thread() is threading.main_thread()
        if hangup:
            loop.add_signal_handler(signal.SIGHUP, _reload_on_signal, service)
        yield
        stop_watching.set()
        if hangup:
            loop.remove_signal_handler(signal.SIGHUP)

    return Litestar(
        route_handlers=[healthz, readyz, prometheus_metrics, index_info, reload_index, ask,
                        ask_stream, chat_completions, *document_routes(settings)],
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        state=State({"service": service}),
        lifespan=[lifespan],
        on_app_init=[add_web_page],  # GET / and /static/*: the web page (rag/serve/page.py)
        before_request=guard_request(keys, auth.allowed_hosts(settings), frozenset(origins)),
        cors_config=CORSConfig(allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                               allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
                               expose_headers=["X-Request-Id"])
        if origins else None,
        request_max_body_size=settings.max_body_bytes,
        multipart_form_part_limit=MAX_FORM_PARTS,
        exception_handlers={Exception: handle_error},
        middleware=[access_log],
        logging_config=None,  # `rag serve` sets up logging: one JSON line per request
        debug=False,
    )


def _reload_on_signal(service: ServiceDep) -> None:
    def run() -> None:
        try:
            service.reload()
        except Exception as exc:  # logged by reload; a signal has nobody to answer
            log.error(json.dumps({"event": "sighup_reload_failed", "error": str(exc)}))

    threading.Thread(target=run, name="rag-reload", daemon=True).start()
