"""Shared fixtures: the real embedder, a real index of the bundled article, the real small GGUF.

Everything heavy is session-scoped and built once; tests never touch the user's var/index.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from index_build.build import build_index
from rag.index_store import StoredIndex, load_index
from rag.model_loading import Embedder
from rag.pipeline import Pipeline
from rag.settings import BUNDLED_CORPUS, Settings

ARTICLE = BUNDLED_CORPUS.read_text(encoding="utf-8")


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
    yield Pipeline.load(settings, embedder)
