"""The OpenAI chat-completions shapes: requests in, completions and stream chunks out.

The grounding an OpenAI response has no field for (citations, refusal, prompt version) rides
along as extra top-level keys, which OpenAI clients expose as ``model_extra``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec

from rag.errors import InputError
from rag.settings import Settings
from rag.types import Answer, Citation, Question, Turn


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(msgspec.Struct):
    messages: list[ChatMessage]
    model: str | None = None
    stream: bool = False
    top_k: int | None = None
    # This request's operating point (an extra field: OpenAI clients send it in extra_body).
    min_confidence: float | None = None


def question(request: ChatRequest, settings: Settings) -> Question:
    """The question (the last user message), the user and assistant turns before it as its
    conversation, and the request's choices."""
    messages = request.messages
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"),
                None)
    if last is None:
        raise InputError("messages must contain at least one message with role 'user'")
    history = [Turn(m.role, _text(m)) for m in messages[:last] if m.role in {"user", "assistant"}]
    return Question.checked(_text(messages[last]), settings, request.top_k, history,
                            request.min_confidence)


def _text(message: ChatMessage) -> str:
    content = message.content
    if isinstance(content, list):
        return " ".join(_text_part(part) for part in content if part.get("type") == "text")
    return content or ""


def _text_part(part: dict[str, Any]) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise InputError("a content part of type 'text' needs a string 'text'")
    return text


def sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def chunk(completion_id: str, model: str, delta: dict[str, Any],
          finish_reason: str | None = None, extra: dict[str, Any] | None = None) -> bytes:
    return sse(None, {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                     "logprobs": None}],
        **(extra or {}),
    })


class AssistantMessage(msgspec.Struct):
    role: str  # "assistant"
    content: str


class CompletionChoice(msgspec.Struct):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(msgspec.Struct):
    """A chat completion as OpenAI shapes it, with the answer's grounding as extra keys."""

    id: str
    object: str  # "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    citations: list[Citation]
    refused: bool
    confidence: float | None  # P(the answer is right); None when refused
    prompt: str
    standalone_question: str | None


def completion(completion_id: str, answer: Answer) -> ChatCompletion:
    prompt_tokens = answer.trace.prompt_tokens if answer.trace else 0
    completion_tokens = answer.trace.completion_tokens if answer.trace else 0
    return ChatCompletion(
        id=completion_id, object="chat.completion", created=int(time.time()), model=answer.model,
        choices=[CompletionChoice(0, AssistantMessage("assistant", answer.answer), "stop")],
        usage=Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens),
        **_grounding(answer),
    )


def answer_extras(answer: Answer) -> dict[str, Any]:
    """The grounding as the last stream chunk's extra keys: the same as a completion's."""
    extras: dict[str, Any] = msgspec.to_builtins(_grounding(answer))
    return extras


def _grounding(answer: Answer) -> dict[str, Any]:
    """The answer's fields an OpenAI response has no field for, as its JSON record has them."""
    body = answer.body()
    return {"citations": body.citations, "refused": body.refused,
            "confidence": body.confidence, "prompt": body.prompt,
            "standalone_question": body.standalone_question}
