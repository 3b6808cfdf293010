"""The unit tier: no model file is read here. Loading the embedder or a generator fails the test,
and a `rag` child process finds no model directory, so the tier passes on a machine without them
(`make unit`); what needs a model belongs in tests/model or tests/service."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag import factory
from rag.retrieval import embedder


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a unit test loaded a model: move it to tests/model")


@pytest.fixture(autouse=True)
def no_models(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setattr(embedder.Embedder, "__init__", _refuse)
    monkeypatch.setattr(factory, "load_engine", _refuse)
    empty: Path = tmp_path_factory.mktemp("no-models")
    monkeypatch.setenv("RAG_MODEL_DIR", str(empty))
