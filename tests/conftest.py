"""Shared fixtures: the real embedder, a real index of the bundled article, the real small GGUF.

Everything heavy is session-scoped and built once; tests never touch the user's var/index.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from index_build.build import build_index
from rag.answer.drafting import DeltaCallback
from rag.factory import load_pipeline
from rag.guard import Guard
from rag.pipeline import PassagesCallback, Pipeline
from rag.retrieval.embedder import Embedder
from rag.retrieval.store import StoredIndex, load_index
from rag.settings import BUNDLED_CORPUS, Settings
from rag.types import Answer, Question, Turn

if TYPE_CHECKING:
    from tests.servers import Server

ARTICLE = BUNDLED_CORPUS.read_text(encoding="utf-8")
DEFAULTS = Settings()


def ask(pipeline: Pipeline, text: str, *, top_k: int | None = None,
        history: list[Turn] | None = None, min_confidence: float | None = None,
        on_passages: PassagesCallback | None = None, on_delta: DeltaCallback | None = None,
        guard: Guard | None = None) -> Answer:
    """``pipeline.ask`` on a question checked as the CLI and the service check it."""
    question = Question.checked(text, DEFAULTS, top_k, history or [], min_confidence)
    return pipeline.ask(question, on_passages=on_passages, on_delta=on_delta, guard=guard)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(index_dir: Path, **overrides: object) -> Settings:
    """Settings for tests: the small generator, an index in a temp folder.

    Only RAG_MODEL_DIR is taken from the environment (where the models are installed).
    """
    environ = {k: v for k, v in os.environ.items() if k == "RAG_MODEL_DIR"}
    return Settings.from_env(environ, index_dir=index_dir, llm="small", **overrides)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(os.cpu_count() or 1)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("index") / "index")


@pytest.fixture(scope="session")
def article_index(settings: Settings, embedder: Embedder) -> StoredIndex:
    build_index(settings, embedder=embedder)
    return load_index(settings.index_dir, embedder.name)


@pytest.fixture(scope="session")
def pipeline(
    settings: Settings, embedder: Embedder, article_index: StoredIndex
) -> Iterator[Pipeline]:
    yield load_pipeline(settings, embedder)


@pytest.fixture(scope="session")
def article_server(settings: Settings, article_index: StoredIndex,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `rag serve` over the article index for every module that needs no setting of its own
    (each start loads the models: about 20 s here). Its queue holds 4 waiting requests, and a
    request's deadline is one no queued question reaches on a slow machine (the load check
    fills the queue; tests/service/test_http_limits.py has the deadline's 504)."""
    from tests.servers import running_server  # it imports this module

    log = tmp_path_factory.mktemp("server") / "service.log"
    with running_server(settings, log, RAG_MAX_QUEUE="4", RAG_REQUEST_TIMEOUT_S="240") as running:
        yield running
