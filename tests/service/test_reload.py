"""The index life cycle on a running service: rebuild, then swap in by POST /v1/index/reload or
SIGHUP with no failed request; a damaged new index is refused and the old one keeps serving."""

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from index_build.build import build_index
from rag.factory import with_index
from rag.pipeline import Pipeline
from rag.retrieval import store
from rag.retrieval.embedder import Embedder
from rag.serve.admission import ModelGate
from rag.serve.service import Service
from rag.settings import BUNDLED_CORPUS, Settings
from tests.conftest import make_settings
from tests.servers import Server, running_server

pytestmark = pytest.mark.llm
EXTRA = "The Yeosu lighthouse keeper, Min-ji Park, repainted the lighthouse green in 2021.\n"


@pytest.fixture(scope="module")
def own_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    """An index of its own: these tests replace it under the running service."""
    settings = make_settings(tmp_path_factory.mktemp("reload") / "index")
    build_index(settings, [BUNDLED_CORPUS], embedder)
    return settings


@pytest.fixture(scope="module")
def server(own_index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # No watcher: these tests are about the explicit reload (the watcher is tested with uploads).
    with running_server(own_index, tmp_path_factory.mktemp("log") / "service.log",
                        RAG_INDEX_WATCH_S="0") as running:
        yield running


def _rebuild(settings: Settings, *paths: Path) -> None:
    """`rag index build` in its own process, as a user would run it beside the service."""
    subprocess.run([sys.executable, "-m", "rag.cli", "index", "build", *map(str, paths),
                    "--index-dir", str(settings.index_dir)], check=True, capture_output=True)


def _documents(server: Server) -> list[str]:
    info = httpx.get(f"{server.url}/v1/index", timeout=10).json()
    return sorted(d["id"] for d in info["documents"])


class Traffic:
    """Questions asked one after another while the index changes; every status is kept."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            response = httpx.post(f"{self.server.url}/v1/ask", timeout=120,
                                  json={"question": "Who is Taro Kono?"})
            self.statuses.append(response.status_code)


def test_a_rebuilt_index_is_swapped_in_without_failing_a_request(
    server: Server, own_index: Settings, tmp_path: Path
) -> None:
    extra = tmp_path / "lighthouse.txt"
    extra.write_text(EXTRA, encoding="utf-8")
    with Traffic(server) as traffic:
        _rebuild(own_index, BUNDLED_CORPUS, extra)
        reloaded = httpx.post(f"{server.url}/v1/index/reload", timeout=120)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["status"] == "reloaded"
        assert _documents(server) == ["gsomia_article.txt", "lighthouse.txt"]
        answer = httpx.post(f"{server.url}/v1/ask", timeout=120,
                            json={"question": "What colour was the Yeosu lighthouse painted?"})
        assert answer.status_code == 200
        body = answer.json()  # answered from the new document, and only from it
        assert not body["refused"] and "green" in body["answer"].lower(), body
        assert [c["source"] for c in body["citations"]] == ["lighthouse.txt"]
        assert body["citations"][0]["quote"] in EXTRA
        _rebuild(own_index, BUNDLED_CORPUS)
        server.hangup()  # SIGHUP: the same swap
        deadline = time.time() + 60
        while _documents(server) != ["gsomia_article.txt"]:
            assert time.time() < deadline, "SIGHUP did not swap the index in"
            time.sleep(0.2)
    assert traffic.statuses and set(traffic.statuses) == {200}, traffic.statuses


def test_a_damaged_new_index_is_refused_and_the_old_one_keeps_serving(
    server: Server, own_index: Settings, tmp_path: Path
) -> None:
    serving = httpx.get(f"{server.url}/v1/index", timeout=10).json()["fingerprint"]
    extra = tmp_path / "lighthouse.txt"
    extra.write_text(EXTRA, encoding="utf-8")
    _rebuild(own_index, BUNDLED_CORPUS, extra)
    dense = own_index.index_dir.resolve() / store.DENSE
    dense.write_bytes(dense.read_bytes()[:-64])  # truncated after the build
    response = httpx.post(f"{server.url}/v1/index/reload", timeout=120)
    assert response.status_code == 409, response.text
    message = response.json()["error"]["message"]
    assert "damaged" in message and "still serving the previous one" in message
    assert httpx.get(f"{server.url}/v1/index", timeout=10).json()["fingerprint"] == serving
    answer = httpx.post(f"{server.url}/v1/ask", json={"question": "Who is Taro Kono?"},
                        timeout=120)
    assert answer.status_code == 200 and answer.json()["citations"]


def test_a_reload_swaps_the_index_in_while_a_question_holds_the_only_slot(
    pipeline: Pipeline, embedder: Embedder, tmp_path: Path
) -> None:
    """The prompts' fixed prefixes do not change with the index (the passages come with each
    question), so a reload needs no model slot: it never waits behind the questions."""
    settings = make_settings(tmp_path / "index")
    build_index(settings, [BUNDLED_CORPUS], embedder)
    service = Service(settings, ModelGate(max_waiting=4, slots=1))
    service.pipelines = [with_index(pipeline, settings)]
    extra = tmp_path / "lighthouse.txt"
    extra.write_text(EXTRA, encoding="utf-8")
    build_index(settings, [BUNDLED_CORPUS, extra], embedder)
    holding, release = threading.Event(), threading.Event()

    def question(slot: int) -> None:  # a question in flight on the only slot
        holding.set()
        release.wait(120)

    held = threading.Thread(target=service.gate.admit().run, args=(question,))
    held.start()
    try:
        assert holding.wait(30)
        outcome: list[dict[str, object]] = []
        reload = threading.Thread(target=lambda: outcome.append(service.reload()))
        reload.start()
        reload.join(60)
        assert outcome and outcome[0]["status"] == "reloaded", "the reload waited for the slot"
    finally:
        release.set()
        held.join(30)
    served = service.ready().index
    assert sorted(d.doc_id for d in served.manifest.documents) == [
        "gsomia_article.txt", "lighthouse.txt"]
