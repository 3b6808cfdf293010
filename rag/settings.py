"""One settings object for the whole project.

Every field can be set from the environment as ``RAG_<FIELD NAME IN CAPITALS>`` (for example
``RAG_TOP_K=6``) and most from CLI flags; the defaults work out of the box.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag.errors import SettingsError

ENV_PREFIX = "RAG_"
# How `rag serve` writes its log lines (rag.serve.logs).
LOG_FORMATS = ("text", "json")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CORPUS = PROJECT_ROOT / "corpus" / "gsomia_article.txt"
PROMPTS_DIR = PROJECT_ROOT / "prompts"

LlmChoice = Literal["default", "small"]
PromptMode = Literal["auto", "corpus", "retrieval", "reuse"]


def _default_model_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "grounded-rag" / "models"


@dataclass(frozen=True)
class Settings:
    # Where things live.
    index_dir: Path = Path("var/index")
    model_dir: Path = field(default_factory=_default_model_dir)
    prompts_dir: Path = PROMPTS_DIR

    # Generator: a known model by name, or any GGUF file by path (which wins when set).
    llm: LlmChoice = "default"
    model_path: Path | None = None
    n_ctx: int = 4096
    n_threads: int = 0  # decode steps; 0 means one per core
    n_threads_batch: int = 0  # batched prompt reads; 0 means one per core
    n_batch: int = 512
    flash_attn: bool = False
    max_answer_tokens: int = 96
    # Tokens guessed per answer step from what followed the answer's last tokens in the prompt,
    # all checked in the step's one read (prompt-lookup decoding; the answer is the greedy one
    # either way); 0 decodes one token a step.
    lookahead_tokens: int = 3
    # A request still waiting or generating after this long stops (HTTP 504), freeing the model.
    request_timeout_s: float = 60.0
    # How the passages reach the model: "retrieval" shows the retrieved ones; "reuse" the same,
    # all but the best two from stored KV states (faster, less precise citations:
    # docs/performance.md); "corpus" every chunk as a fixed, cached prefix (2.3x faster on the
    # article, 3 fewer right answers of 64: docs/evaluation.md); "auto" takes corpus when the
    # corpus fits corpus_max_tokens.
    prompt_mode: PromptMode = "retrieval"
    corpus_max_tokens: int = 2500
    # The reuse layout's stored passage states (beside the index): the disk they may take.
    passage_states_mb: int = 2048
    # The reuse layout: how many of the best passages are read whole, beside the question, and
    # how many first tokens of every stored passage are read anew where it lands (EPIC).
    reuse_fresh_passages: int = 2
    reuse_fresh_tokens: int = 0
    prompt: str = "answer_v3"
    verify_prompt: str = "verify_v1"
    followup_prompt: str = "resolve_v1"
    # Earlier turns of a conversation shown when rewriting a follow-up question.
    max_history_turns: int = 6

    # Chunking (tokens are cl100k_base tokens).
    chunk_tokens: int = 80
    chunk_overlap: int = 20

    # Retrieval.
    top_k: int = 4
    candidates: int = 20
    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 1.5
    # From this many chunks on the index builder uses approximate (IVF) instead of exact search:
    # exact search passes 20 ms per query at about 350,000 vectors here (docs/performance.md).
    ann_threshold: int = 200_000

    # Refusal and citation checking.
    min_relevance: float = 0.05
    min_support: float = 0.5
    # The operating point: an answer whose estimated P(right) is below this is refused. Unset,
    # the value chosen for the generator on tuning data (rag.decision.scorers.choice_for).
    min_confidence: float | None = None

    # Service.
    host: str = "127.0.0.1"
    port: int = 8000
    max_question_chars: int = 2000
    # Requests allowed to wait for the model; more get HTTP 503 with Retry-After.
    max_queue: int = 16
    # Requests the service answers at once, their decode steps shared (continuous batching);
    # each has n_ctx tokens of context of its own. 1 on this 2-core machine: 2 and 4 gave no
    # more requests/s, and batched reads changed 2-3 answers of 16 (docs/performance.md).
    parallel: int = 1
    # Prompt tokens read in one step beside the requests that are generating (chunked prefill).
    prefill_slice: int = 128
    # Largest request body; larger ones get HTTP 413.
    max_body_bytes: int = 65536
    # Bearer keys every route but health, readiness and the page requires: a comma-separated
    # list and/or a file with one key a line. None set: no authentication (loopback only).
    api_keys: str = ""
    api_keys_file: Path | None = None
    # Keys that may also upload, delete and reload (comma-separated); the keys above may only
    # ask. None set: those routes take no browser request but from the service's own page.
    admin_keys: str = ""
    # Origins allowed to call the API from a browser (comma-separated); empty: CORS off.
    cors_origins: str = ""
    # Host names the service answers to beside the bind address, localhost, 127.0.0.1 and
    # [::1] (comma-separated; "*": any). Others get HTTP 403: a web page cannot reach a local
    # service through a DNS name of its own (DNS rebinding).
    allowed_hosts: str = ""
    # Documents sent to the service (POST /v1/documents): the largest upload request (HTTP
    # 413), a document's pages and extracted characters, and how many documents the index may
    # hold (HTTP 422 beyond each).
    max_upload_bytes: int = 32 * 1024 * 1024
    max_document_pages: int = 500
    max_document_chars: int = 2_000_000
    max_documents: int = 500
    # Uploads that may wait to be indexed, their files held in memory; more get HTTP 503.
    max_pending_uploads: int = 4
    # How often (seconds) the service looks whether another process (a replica, `rag index
    # add`) swapped a new index in, and then loads it; 0: only on reload or SIGHUP.
    index_watch_s: float = 2.0
    # The service's log lines: "text" (each event's JSON object, with its request's id) or
    # "json" (every line a JSON object: time, level, logger, request id, fields).
    log_format: str = "text"  # one of LOG_FORMATS

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.top_k >= 1, "top_k must be at least 1"),
            (self.candidates >= self.top_k, "candidates must be at least top_k"),
            (self.chunk_tokens >= 16, "chunk_tokens must be at least 16"),
            (
                0 <= self.chunk_overlap < self.chunk_tokens,
                "chunk_overlap must be at least 0 and below chunk_tokens",
            ),
            (self.n_ctx >= 512, "n_ctx must be at least 512"),
            (self.n_threads >= 0, "n_threads must be 0 (auto) or more"),
            (self.n_threads_batch >= 0, "n_threads_batch must be 0 (auto) or more"),
            (self.n_batch >= 32, "n_batch must be at least 32"),
            (self.request_timeout_s > 0, "request_timeout_s must be above 0"),
            (self.corpus_max_tokens >= 0, "corpus_max_tokens must be 0 or more"),
            (self.passage_states_mb >= 1, "passage_states_mb must be at least 1"),
            (0 <= self.lookahead_tokens <= 32, "lookahead_tokens must be between 0 and 32"),
            (self.reuse_fresh_passages >= 0, "reuse_fresh_passages must be 0 or more"),
            (0 <= self.reuse_fresh_tokens <= 64, "reuse_fresh_tokens must be between 0 and 64"),
            (self.max_answer_tokens >= 16, "max_answer_tokens must be at least 16"),
            (self.max_question_chars >= 1, "max_question_chars must be at least 1"),
            (self.max_queue >= 1, "max_queue must be at least 1"),
            (self.max_pending_uploads >= 1, "max_pending_uploads must be at least 1"),
            (1 <= self.parallel <= 64, "parallel must be between 1 and 64"),
            (self.prefill_slice >= 1, "prefill_slice must be at least 1"),
            (self.max_history_turns >= 0, "max_history_turns must be 0 or more"),
            (self.min_confidence is None or 0 <= self.min_confidence <= 1,
             "min_confidence must be between 0 and 1"),
            (self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024"),
            (self.max_upload_bytes >= 1024, "max_upload_bytes must be at least 1024"),
            (self.max_document_pages >= 1, "max_document_pages must be at least 1"),
            (self.max_document_chars >= 1, "max_document_chars must be at least 1"),
            (self.max_documents >= 1, "max_documents must be at least 1"),
            (self.index_watch_s >= 0, "index_watch_s must be 0 (off) or more"),
            (self.rrf_k >= 1, "rrf_k must be at least 1"),
            (self.dense_weight >= 0 and self.lexical_weight >= 0, "fusion weights must be >= 0"),
            (self.dense_weight + self.lexical_weight > 0, "one fusion weight must be above 0"),
            (self.ann_threshold >= 1, "ann_threshold must be at least 1"),
            (0 < self.port < 65536, "port must be between 1 and 65535"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(f"invalid setting: {message}")

    @property
    def threads(self) -> int:
        return self.n_threads or os.cpu_count() or 1

    @property
    def batch_threads(self) -> int:
        return self.n_threads_batch or os.cpu_count() or 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 flags: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``RAG_*`` environment variables, then ``flags`` (a command line's
        text, by field name, parsed as the variables are), then explicit typed overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f"{ENV_PREFIX}{f.name.upper()}={raw!r}", raw,
                                        hints[f.name])
        for name, raw in (flags or {}).items():
            values[name] = _parse(f"--{name.replace('_', '-')} {raw!r}", raw, hints[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def public(self) -> dict[str, Any]:
        """The settings as plain JSON values, for reports and logs; keys are never shown."""
        values = dataclasses.asdict(self)
        values["api_keys"] = "(set)" if self.api_keys else ""
        values["admin_keys"] = "(set)" if self.admin_keys else ""
        return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


def _parse(given: str, raw: str, hint: Any) -> Any:
    """``raw`` as a value of type ``hint``; ``given`` names where it came from in an error."""
    target = _concrete_type(hint)
    try:
        if typing.get_origin(target) is Literal:
            allowed = typing.get_args(target)
            if raw not in allowed:
                raise ValueError(f"expected one of {', '.join(allowed)}")
            return raw
        if target is Path:
            return Path(raw).expanduser()
        if target is bool:
            return _parse_bool(raw)
        return target(raw)
    except ValueError as exc:
        raise SettingsError(f"{given} is not valid: {exc}") from None


def _concrete_type(hint: Any) -> Any:
    """``Path | None`` -> ``Path``; other hints pass through."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")
