"""Documents uploaded to a running service: from the upload accepted to the first question it
answers, for a 20-page PDF and a 1-page text file, beside a full rebuild of the same corpus and
the time a second replica takes to serve the upload, in one run.

Each file carries one fact no other document states; it counts as answerable when the service
answers the question about that fact with a citation into the file.
"""

from __future__ import annotations

import random
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import service
from eval.sample_files import pdf_bytes
from index_build.build import build_index
from index_build.chunking import sentence_spans
from rag.retrieval.embedder import Embedder
from rag.settings import BUNDLED_CORPUS, Settings

LINES_PER_PAGE = 40
LINE_CHARS = 90
POLL_S = 0.05


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    question: str
    fact: str  # the answer must contain this


def cases(seed: int = 5) -> dict[str, Case]:
    """A 20-page PDF of shuffled article sentences with a fact on page 17; a 1-page note."""
    # Helvetica in the PDF writer speaks Latin-1: the article's typographic quotes go.
    text = BUNDLED_CORPUS.read_text(encoding="utf-8").encode("ascii", "ignore").decode()
    sentences = [text[a:b] for a, b in sentence_spans(text)]
    rng = random.Random(seed)
    pages = [_page(rng, sentences) for _ in range(20)]
    pages[16][20:20] = ["The Varnholm ferry captain is named Ilse Brandt."]
    note = ("The Oravik lighthouse was built in 1874 from grey granite.\n\n"
            "Its keeper, Tomas Lind, logs the weather every morning at six.\n")
    return {
        "pdf_20_pages": Case("Varnholm report.pdf", pdf_bytes(pages),
                             "Who is the captain of the Varnholm ferry?", "Brandt"),
        "text_1_page": Case("oravik.txt", note.encode(), "When was the Oravik lighthouse built?",
                            "1874"),
    }


def _page(rng: random.Random, sentences: list[str]) -> list[str]:
    """About a page of text: sentences, wrapped into LINES_PER_PAGE lines."""
    lines: list[str] = []
    while len(lines) < LINES_PER_PAGE:
        lines += textwrap.wrap(rng.choice(sentences), LINE_CHARS)
    return lines[:LINES_PER_PAGE]


def measure(env: dict[str, str], settings: Settings, embedder: Embedder, work: Path
            ) -> dict[str, Any]:
    """Upload each case to a replica (a second one watching the same index) of an index of the
    article, then rebuild the whole corpus from scratch for comparison."""
    results: dict[str, Any] = {"uploads": {}}
    build_index(settings, [BUNDLED_CORPUS], embedder)
    watched = {**env, "RAG_INDEX_WATCH_S": "0.5"}
    with service.serve(watched) as first, service.serve(watched) as second:
        for label, case in cases().items():
            results["uploads"][label] = _upload(first.url, second.url, case)
    files = work / "uploaded"
    files.mkdir(exist_ok=True)
    for case in cases().values():
        (files / case.name).write_bytes(case.data)
    started = time.perf_counter()
    built = build_index(settings.replace(index_dir=work / "rebuilt"),
                        [BUNDLED_CORPUS, *sorted(files.iterdir())], embedder)
    results["full_rebuild_s"] = time.perf_counter() - started
    results["full_rebuild_chunks"] = built.manifest.chunk_count
    results["watch_interval_s"] = float(watched["RAG_INDEX_WATCH_S"])
    return results


def _upload(url: str, other: str, case: Case) -> dict[str, Any]:
    """Upload accepted (202) -> job done -> the question answered from it; the other replica
    listing it is timed from the same moment."""
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/documents", params={"wait": "false"}, timeout=600,
                          files={"file": (case.name, case.data)})
    response.raise_for_status()
    accepted = time.perf_counter()
    elsewhere: list[float] = []
    watcher = threading.Thread(target=_until_listed, args=(other, response.json(), elsewhere))
    watcher.start()
    stages: dict[str, float] = {}
    job = response.json()
    while job["status"] == "running":
        stages.setdefault(job["stage"], time.perf_counter() - accepted)
        time.sleep(POLL_S)
        job = httpx.get(f"{url}/v1/documents/jobs/{job['job']}", timeout=60).json()
    indexed = time.perf_counter() - accepted
    if job["status"] != "done":
        raise RuntimeError(f"the upload of {case.name} failed: {job['error']}")
    document = job["documents"][0]
    answer = httpx.post(f"{url}/v1/ask", json={"question": case.question}, timeout=600).json()
    answered = time.perf_counter() - accepted
    watcher.join()
    return {
        "bytes": len(case.data), "pages": document["pages"], "chunks": document["chunks"],
        "accepted_s": accepted - started, "stages_s": stages, "indexed_and_served_s": indexed,
        "first_answer_s": answered, "answer_s": answered - indexed,
        "right": case.fact in answer["answer"] and not answer["refused"]
        and [c["source"] for c in answer["citations"]][:1] == [document["id"]],
        "other_replica_serves_s": elsewhere[0] - accepted,
    }


def _until_listed(url: str, job: dict[str, Any], seen: list[float]) -> None:
    """When the replica at ``url`` first lists the document ``job`` is adding (its name is
    the only one the job knows before it is done)."""
    while True:
        documents = httpx.get(f"{url}/v1/documents", timeout=60).json()["documents"]
        if any(d["name"] == job["files"][0] for d in documents):
            seen.append(time.perf_counter())
            return
        time.sleep(POLL_S)
