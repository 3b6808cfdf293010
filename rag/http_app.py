"""The HTTP service: a thin litestar layer over ``Pipeline.ask``.

The pipeline (index and models) is loaded once, in the background, when the app starts: ``/healthz``
answers at once and ``/readyz`` turns 200 when loading is done. Every question goes through one
``ModelGate``, so generation runs in a worker thread, one at a time, while the event loop stays
free. Exceptions are mapped to HTTP statuses in one table (``ERROR_STATUS``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from rag import errors
from rag.errors import CancelledError
from rag.model_gate import ModelGate, ServiceBusyError
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.types import Answer, Passage
from rag.web_page import add_web_page

log = logging.getLogger("rag.http")


class NotReadyError(errors.RagError):
    """The index and models are still loading (or failed to load)."""


ERROR_STATUS: dict[type[Exception], int] = {
    errors.InputError: 400,
    NotReadyError: 503,
    ServiceBusyError: 503,
    errors.IndexNotFoundError: 503,
    errors.IndexMismatchError: 503,
    errors.ModelNotFoundError: 503,
    errors.ModelIntegrityError: 503,
    errors.LlamaRuntimeError: 503,
    errors.DeadlineExceededError: 504,
    CancelledError: 499,  # the client went away; nobody reads this status
}


# ---- request bodies -------------------------------------------------------------------------


class AskRequest(msgspec.Struct):
    question: str
    top_k: int | None = None


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(msgspec.Struct):
    messages: list[ChatMessage]
    model: str | None = None
    stream: bool = False
    top_k: int | None = None


# ---- the service: pipeline + gate, loaded in the background ----------------------------------


@dataclass
class Service:
    settings: Settings
    gate: ModelGate
    pipeline: Pipeline | None = None
    load_error: str | None = None
    loaded_at: float | None = None
    started_at: float = field(default_factory=time.time)

    def ready(self) -> Pipeline:
        if self.pipeline is not None:
            return self.pipeline
        if self.load_error:
            raise NotReadyError(f"the service failed to load: {self.load_error}")
        raise NotReadyError("the service is still loading the index and models; retry shortly")

    def load(self) -> None:
        from index_build.build import ensure_default_index

        try:
            ensure_default_index(self.settings, announce=log.info)
            pipeline = Pipeline.load(self.settings)
            pipeline.warm_up()
            self.pipeline = pipeline
            self.loaded_at = time.time()
            load_s = round(self.loaded_at - self.started_at, 2)
            log.info(json.dumps({"event": "ready", "load_s": load_s}))
        except Exception as exc:  # reported by /readyz and every question route
            self.load_error = str(exc)
            log.error(json.dumps({"event": "load_failed", "error": str(exc)}))

    async def ask(
        self,
        question: str,
        top_k: int | None,
        on_passages: Callable[[list[Passage]], None] | None = None,
        on_delta: Callable[[str], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> Answer:
        pipeline = self.ready()

        def job() -> Answer:
            return pipeline.ask(question, top_k, on_passages=on_passages, on_delta=on_delta,
                                cancelled=cancelled)

        return await anyio.to_thread.run_sync(self.gate.run, job, cancelled)

    def validate(self, question: str, top_k: int | None) -> str:
        pipeline = self.ready()
        pipeline.validate_top_k(top_k)
        return pipeline.validate_question(question)


def provide_service(state: State) -> Service:
    service: Service = state.service
    return service


# ---- routes ---------------------------------------------------------------------------------


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", sync_to_thread=False)
def readyz(service: Service) -> Response[dict[str, Any]]:
    if service.pipeline is not None:
        return Response({"status": "ready"}, status_code=200)
    status = "failed" if service.load_error else "loading"
    return Response({"status": status, "error": service.load_error}, status_code=503)


@get("/v1/index", sync_to_thread=False)
def index_info(service: Service) -> dict[str, Any]:
    pipeline = service.ready()
    manifest = pipeline.index.manifest
    return {
        "documents": [
            {"doc_id": d.doc_id, "path": d.path, "chars": d.chars, "chunks": d.chunks,
             "sha256": d.sha256}
            for d in manifest.documents
        ],
        "chunk_count": manifest.chunk_count,
        "created_at": manifest.created_at,
        "build_seconds": manifest.build_seconds,
        "dense_index": manifest.dense_index,
        "chunking": {"max_tokens": manifest.chunk_tokens, "overlap_tokens": manifest.chunk_overlap,
                     "encoding": manifest.token_encoding},
        "models": {"embedding": manifest.embed_model, "generator": pipeline.model_name},
        "prompt": pipeline.prompt_version,
    }


@post("/v1/ask", status_code=200)
async def ask(
    data: AskRequest, service: Service, request: Request[Any, Any, Any]
) -> dict[str, Any]:
    question = service.validate(data.question, data.top_k)
    async with cancel_on_disconnect(request) as cancelled:
        answer = await service.ask(question, data.top_k, cancelled=cancelled)
    _note(request, answer)
    return answer.to_dict()


@post("/v1/ask/stream", status_code=200)
async def ask_stream(data: AskRequest, service: Service, request: Request[Any, Any, Any]) -> Stream:
    question = service.validate(data.question, data.top_k)

    async def events() -> AsyncIterator[bytes]:
        yield b": answering\n\n"  # first byte at once: time to first byte never waits for the model
        async for kind, payload in _run_streaming(service, question, data.top_k):
            if kind == "passages":
                yield _sse("passages", {"passages": [p.to_dict() for p in payload]})
            elif kind == "delta":
                yield _sse("delta", {"text": payload})
            elif kind == "answer":
                _note(request, payload)
                yield _sse("answer", payload.to_dict())
            else:
                yield _sse("error", _error_body(payload)[1])

    return Stream(events(), media_type="text/event-stream", headers=_STREAM_HEADERS)


@post("/v1/chat/completions", status_code=200)
async def chat_completions(
    data: ChatRequest, service: Service, request: Request[Any, Any, Any]
) -> Any:
    question = service.validate(_last_user_message(data.messages), data.top_k)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if not data.stream:
        async with cancel_on_disconnect(request) as cancelled:
            answer = await service.ask(question, data.top_k, cancelled=cancelled)
        _note(request, answer)
        return _completion(completion_id, answer)

    async def chunks() -> AsyncIterator[bytes]:
        model = service.ready().model_name
        yield _openai_chunk(completion_id, model, {"role": "assistant", "content": ""})
        async for kind, payload in _run_streaming(service, question, data.top_k):
            if kind == "answer":
                # Only checked text reaches the client: a refusal cannot be unsent.
                _note(request, payload)
                yield _openai_chunk(completion_id, model, {"content": payload.answer})
                yield _openai_chunk(completion_id, model, {}, finish_reason="stop",
                                    extra=_answer_extras(payload))
            elif kind == "error":
                yield _sse(None, {"error": _error_body(payload)[1]["error"]})
        yield b"data: [DONE]\n\n"

    return Stream(chunks(), media_type="text/event-stream", headers=_STREAM_HEADERS)


# ---- streaming plumbing ---------------------------------------------------------------------

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _run_streaming(
    service: Service, question: str, top_k: int | None
) -> AsyncIterator[tuple[str, Any]]:
    """Run one question in a worker thread; yield ("passages"|"delta"|"answer"|"error", payload).

    If the consumer stops (the client disconnected), the generation stops before its next
    llama.cpp call.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = threading.Event()

    def emit(kind: str, payload: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))

    async def work() -> None:
        try:
            answer = await service.ask(
                question, top_k, on_passages=lambda ps: emit("passages", ps),
                on_delta=lambda text: emit("delta", text), cancelled=cancelled,
            )
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
        cancelled.set()
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


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _openai_chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish_reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                     "logprobs": None}],
        **(extra or {}),
    }
    return _sse(None, chunk)


def _completion(completion_id: str, answer: Answer) -> dict[str, Any]:
    prompt_tokens = int(answer.trace.get("prompt_tokens", 0))
    completion_tokens = int(answer.trace.get("completion_tokens", 0))
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.answer},
            "finish_reason": "stop",
            "logprobs": None,
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        **_answer_extras(answer),
    }


def _answer_extras(answer: Answer) -> dict[str, Any]:
    """The grounding an OpenAI response has no field for."""
    data = answer.to_dict()
    return {"citations": data["citations"], "refused": answer.refused, "prompt": answer.prompt}


def _last_user_message(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            content = message.content
            if isinstance(content, list):
                return " ".join(str(part.get("text", "")) for part in content
                                if part.get("type") == "text")
            return content or ""
    raise errors.InputError("messages must contain at least one message with role 'user'")


def _note(request: Request[Any, Any, Any], answer: Answer) -> None:
    """What the access log line reports about the answer."""
    request.scope.setdefault("state", {})["rag"] = {
        "refused": answer.refused, "citations": len(answer.citations),
    }


# ---- errors: one table, one handler ---------------------------------------------------------


def _error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, HTTPException):
        status = exc.status_code
        body: dict[str, Any] = {"message": exc.detail, "type": "invalid_request"}
        if isinstance(exc, ValidationException) and exc.extra:
            body["details"] = exc.extra
        return status, {"error": body}
    for kind, status in ERROR_STATUS.items():
        if isinstance(exc, kind):
            return status, {"error": {"message": str(exc), "type": _snake(type(exc).__name__)}}
    log.exception("internal error", exc_info=exc)
    return 500, {"error": {"message": "internal error; see the service log", "type": "internal"}}


def handle_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    status, body = _error_body(exc)
    headers = {"Retry-After": "2"} if status == 503 else None
    return Response(body, status_code=status, headers=headers, media_type=MediaType.JSON)


def _snake(name: str) -> str:
    name = name.removesuffix("Error")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def require_json(request: Request[Any, Any, Any]) -> None:
    """POST routes take JSON only; anything else is a 415 with a JSON body."""
    if request.method == "POST":
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(
                status_code=415,
                detail=f"send the body as application/json (got {media_type or 'no content type'})",
            )


# ---- one structured log line per request ----------------------------------------------------


def access_log(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, record)
        finally:
            rag_state = scope.get("state", {}).get("rag", {})
            log.info(json.dumps({
                "method": scope.get("method"), "route": scope["path"], "status": status,
                "latency_s": round(time.perf_counter() - started, 3),
                "refused": rag_state.get("refused"), "citations": rag_state.get("citations"),
            }))

    return middleware


# ---- the app --------------------------------------------------------------------------------


def create_app(settings: Settings) -> Litestar:
    service = Service(settings=settings, gate=ModelGate(settings.max_queue))

    @asynccontextmanager
    async def load_in_background(app: Litestar) -> AsyncIterator[None]:
        loader = threading.Thread(target=service.load, name="rag-load", daemon=True)
        loader.start()
        yield

    return Litestar(
        route_handlers=[healthz, readyz, index_info, ask, ask_stream, chat_completions],
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        state=State({"service": service}),
        lifespan=[load_in_background],
        on_app_init=[add_web_page],  # GET / and /static/*: the web page (rag/web_page.py)
        before_request=require_json,
        exception_handlers={Exception: handle_error},
        middleware=[access_log],
        logging_config=None,  # `rag serve` sets up logging: one JSON line per request
        debug=False,
    )
