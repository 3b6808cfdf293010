"""Grounded generation: passages + question -> the model's draft answer and cited passages.

The model answers in JSON constrained by a JSON schema, so its output always parses. It only
generates what cannot be computed afterwards (its verdict, the answer text, passage numbers):
spans and quotes are found later by the citation checker. Generation is always streamed so the
same code path serves the CLI, the eval harness and the SSE endpoint; ``on_delta`` receives the
answer text as it is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.errors import GenerationError
from rag.model_loading import GeneratorModel, Logits, choice_probability
from rag.prompts import PromptTemplate
from rag.settings import Settings
from rag.types import Passage

DeltaCallback = Callable[[str], None]
MAX_CITED = 3


@dataclass(frozen=True)
class Draft:
    """What the model said, before any checking."""

    found: bool
    answer: str
    cited: list[int]  # 1-based passage numbers as shown in the prompt
    prompt_tokens: int
    completion_tokens: int
    # The model's probability for "found": true at the moment it chose, read from its logits;
    # a confident "true" and a hesitant one look alike in the JSON.
    found_probability: float


class Generator:
    def __init__(self, model: GeneratorModel, template: PromptTemplate, settings: Settings) -> None:
        self.model = model
        self.template = template
        self.settings = settings

    def generate(
        self, question: str, passages: list[Passage], on_delta: DeltaCallback | None = None
    ) -> Draft:
        messages = self.template.messages(question=question, passages=format_passages(passages))
        numbers = list(range(1, len(passages) + 1))
        probe = FoundProbe(self.model)
        stream = self.model.llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            temperature=0.0,
            seed=self.settings.seed,
            max_tokens=self.settings.max_answer_tokens,
            response_format={"type": "json_object", "schema": answer_schema(numbers)},
            logits_processor=[probe],  # type: ignore[arg-type]
            stream=True,
        )
        text = ""
        streamer = AnswerStreamer()
        completion_tokens = 0
        for chunk in stream:
            piece = str(chunk["choices"][0]["delta"].get("content") or "")  # type: ignore[index, union-attr]
            if not piece:
                continue
            completion_tokens += 1
            text += piece
            delta = streamer.feed(text)
            if delta and on_delta:
                on_delta(delta)
        return parse_draft(
            text, numbers, completion_tokens, self.prompt_tokens(messages), probe.p_true
        )

    def warm_up(self) -> None:
        self.model.prime(self.template.messages(question="?", passages=""))

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        flat = "\n".join(m["content"] for m in messages)
        return len(self.model.llm.tokenize(flat.encode(), add_bos=False, special=False))


class FoundProbe:
    """A logits processor that reads P("found": true) at the step where the model decides it.

    It only watches; the logits pass through unchanged, so the answer is the same with or without
    it.
    """

    _KEY = '"found":'

    def __init__(self, model: GeneratorModel) -> None:
        self._llm = model.llm
        self._true_ids = model.first_token_ids(("true", " true"))
        self._false_ids = model.first_token_ids(("false", " false"))
        self._prompt_length: int | None = None
        self.p_true: float | None = None  # None until the decision step has been seen

    def __call__(self, input_ids: npt.NDArray[np.intc], logits: Logits) -> Logits:
        if self._prompt_length is None:
            self._prompt_length = len(input_ids)
        if self.p_true is None and self._at_decision(input_ids[self._prompt_length :]):
            p_true = choice_probability(logits, self._true_ids, self._false_ids)
            self.p_true = 0.5 if p_true is None else p_true
        return logits

    def _at_decision(self, generated: npt.NDArray[np.intc]) -> bool:
        text = self._llm.detokenize(list(generated)).decode(errors="ignore")
        return text.rstrip().endswith(self._KEY)


def format_passages(passages: list[Passage]) -> str:
    return "\n\n".join(f"[{n}] {p.chunk.text}" for n, p in enumerate(passages, start=1))


def answer_schema(numbers: list[int]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "found": {"type": "boolean"},
            "answer": {"type": "string"},
            "cite": {
                "type": "array",
                "items": {"type": "integer", "enum": numbers},
                "maxItems": MAX_CITED,
            },
        },
        "required": ["found", "answer", "cite"],
    }


def parse_draft(
    text: str,
    numbers: list[int],
    completion_tokens: int,
    prompt_tokens: int,
    found_probability: float | None,
) -> Draft:
    """The model's JSON as a Draft; without a read ``found_probability``, its own verdict."""
    try:
        data = json.loads(text)
    except ValueError:
        # Hitting max_tokens mid-answer leaves the JSON open; salvage the answer text.
        data = _salvage(text)
    if not isinstance(data, dict):
        raise GenerationError(f"the model returned {text[:80]!r}, not a JSON object")
    cited = data.get("cite") or []
    shown = [n for n in cited if isinstance(n, int) and n in numbers]
    found = bool(data.get("found", False))
    return Draft(
        found=found,
        answer=str(data.get("answer", "")).strip(),
        cited=list(dict.fromkeys(shown)),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        found_probability=float(found) if found_probability is None else found_probability,
    )


def _salvage(text: str) -> dict[str, Any]:
    streamer = AnswerStreamer()
    answer = streamer.feed(text)
    return {"found": '"found": true' in text or '"found":true' in text, "answer": answer}


class AnswerStreamer:
    """Extracts the ``answer`` string value from a growing JSON text, as decoded deltas."""

    _KEY = '"answer"'

    def __init__(self) -> None:
        self._emitted = 0

    def feed(self, text: str) -> str:
        value = self._decoded_prefix(text)
        delta = value[self._emitted :]
        self._emitted = len(value)
        return delta

    def _decoded_prefix(self, text: str) -> str:
        key = text.find(self._KEY)
        if key < 0:
            return ""
        opening = text.find('"', key + len(self._KEY))
        if opening < 0:
            return ""
        raw = self._raw_value(text, opening + 1)
        return str(json.loads(f'"{raw}"'))

    @staticmethod
    def _raw_value(text: str, start: int) -> str:
        """The raw characters of the string value up to its end or a safe cut point."""
        i = start
        while i < len(text):
            ch = text[i]
            if ch == '"':
                return text[start:i]
            if ch == "\\":
                escape_len = 6 if text[i + 1 : i + 2] == "u" else 2
                if i + escape_len > len(text):
                    break
                i += escape_len
                continue
            i += 1
        return text[start:i]
