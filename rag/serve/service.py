"""The service's state: one pipeline behind one model gate, loaded in the background, swapped
for a new index between requests.

``/healthz`` answers at once and ``/readyz`` turns 200 when loading is done; every question waits
for its turn at the ``ModelGate`` in a worker thread while the event loop stays free. A reload
(``POST /v1/index/reload``, SIGHUP, an upload or removal here, or the watcher seeing another
process swap a new index in) loads the new index beside the old one and swaps it in between
questions, so no request fails and each is answered from one index; only a change of the prompts'
fixed prefixes waits for every model slot. If the new index does not load, the old one keeps
serving.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec
from litestar.di import NamedDependency

from index_build.build import ensure_default_index
from index_build.uploads import Upload, add_uploads, remove_documents_and_files, tidy_when_idle
from rag import errors
from rag.factory import for_slots, load_pipeline, same_prefixes, warm_up, with_index
from rag.guard import Guard
from rag.pipeline import Pipeline
from rag.retrieval.store import UploadedDocument
from rag.serve.admission import Admission, ModelGate
from rag.serve.jobs import Job, JobBoard, UploadQueue
from rag.serve.metrics import Metrics
from rag.settings import Settings
from rag.types import Answer, Passage, Question

log = logging.getLogger("rag.http")


class Removed(msgspec.Struct):
    """What ``DELETE /v1/documents/{id}`` removed, and what the index holds now."""

    removed: str
    documents: int
    chunks: int


@dataclass
class Service:
    settings: Settings
    gate: ModelGate
    # One pipeline per slot of the gate (requests answered at once), over one engine and index.
    pipelines: list[Pipeline] = field(default_factory=list)
    load_error: str | None = None
    loaded_at: float | None = None
    started_at: float = field(default_factory=time.time)
    jobs: JobBoard = field(default_factory=JobBoard)
    uploads: UploadQueue = field(init=False)
    metrics: Metrics = field(init=False)
    # One reload at a time. Typed Any: litestar inspects this class (the routes' dependency),
    # and threading.Lock is a factory function, not a type it can describe.
    _reloading: Any = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.metrics = Metrics(waiting=lambda: self.gate.waiting, busy_slots=lambda: self.gate.busy,
                               pending_uploads=lambda: self.uploads.pending,
                               running_uploads=lambda: self.uploads.running)
        self.uploads = UploadQueue(self.settings.max_pending_uploads, self.metrics.upload)

    @property
    def pipeline(self) -> Pipeline | None:
        """The first slot's pipeline: what the service serves (index, models, prompt)."""
        return self.pipelines[0] if self.pipelines else None

    def ready(self) -> Pipeline:
        if self.pipeline is not None:
            return self.pipeline
        if self.load_error:
            raise errors.NotReadyError(f"the service failed to load: {self.load_error}")
        raise errors.NotReadyError(
            "the service is still loading the index and models; retry shortly")

    def load(self) -> None:
        try:
            tidy_when_idle(self.settings.index_dir)
            ensure_default_index(self.settings, announce=log.info)
            pipeline = load_pipeline(self.settings, slots=self.gate.slots)
            warm_up(pipeline)
            self.pipelines, self.load_error = for_slots(pipeline, self.gate.slots), None
            self.loaded_at = time.time()
            load_s = round(self.loaded_at - self.started_at, 2)
            log.info(json.dumps({"event": "ready", "load_s": load_s}))
        except Exception as exc:  # reported by /readyz and every question route
            self.load_error = str(exc)
            log.error(json.dumps({"event": "load_failed", "error": str(exc)}))

    def reload(self) -> dict[str, object]:
        """Swap in the index now at the configured path (a worker thread's job); the one served
        already is left as it is. Before the first successful load, this retries the whole
        load."""
        with self._reloading:
            if self.pipeline is None:
                self.load()
                self.ready()
                return {"status": "loaded", "chunks": self.ready().index.manifest.chunk_count}
            current = self.ready()
            if self.settings.index_dir.resolve() == current.index.path:
                # Already served: the watcher and a write of this service can both ask.
                return {"status": "unchanged", "chunks": current.index.manifest.chunk_count,
                        "fingerprint": current.index.manifest.fingerprint}
            try:
                fresh = with_index(current, self.settings)
            except errors.RagError as exc:
                log.error(json.dumps({"event": "reload_failed", "error": str(exc)}))
                raise errors.ReloadFailedError(
                    f"the new index did not load ({exc}); still serving the previous one"
                ) from None

            self._swap_in(current, fresh)
            manifest = fresh.index.manifest
            log.info(json.dumps({"event": "reloaded", "fingerprint": manifest.fingerprint}))
            return {"status": "reloaded", "chunks": manifest.chunk_count,
                    "fingerprint": manifest.fingerprint}

    def _swap_in(self, current: Pipeline, fresh: Pipeline) -> None:
        """Serve ``fresh`` from the next question on. Questions keep their slots when the
        prompts' fixed prefixes did not change (the passages come with each question); a new
        prefix (the corpus layout's documents) is read with every slot taken."""
        if same_prefixes(current, fresh):
            self.pipelines = for_slots(fresh, self.gate.slots, share=False)
            return

        def swap() -> None:
            warm_up(fresh)
            self.pipelines = for_slots(fresh, self.gate.slots)

        self.gate.run(swap)

    def add_documents(self, uploads: list[Upload], job: Job) -> list[UploadedDocument]:
        """Store, index and swap in ``uploads`` (a worker thread's job); ``job`` follows along."""
        embedder = self.ready().retriever.embedder
        outcomes = add_uploads(self.settings, uploads, embedder, on_stage=job.move)
        if any(outcome.status == "added" for outcome in outcomes):
            job.move("loading")
            self.reload()
        return [UploadedDocument(**msgspec.structs.asdict(o.document.listing()), status=o.status)
                for o in outcomes]

    def remove_document(self, doc_id: str) -> Removed:
        """Drop one document from the index and the disk, then serve the index without it."""
        self.ready()
        result = remove_documents_and_files(self.settings, [doc_id])
        self.reload()
        return Removed(removed=doc_id, documents=len(result.manifest.documents),
                       chunks=result.manifest.chunk_count)

    def watch_index(self, stop: threading.Event) -> None:
        """Load the index another process swapped in (a replica's upload, `rag index add`)
        within ``index_watch_s``; a build that failed to load is not tried again."""
        failed: Path | None = None
        while not stop.wait(self.settings.index_watch_s):
            served = self.pipeline.index.path if self.pipeline is not None else None
            current = self.settings.index_dir.resolve()
            if served is None or current in {served, failed}:
                continue
            try:
                self.reload()
            except errors.RagError:  # logged by reload; the old index keeps serving
                failed = current

    async def ask(
        self,
        question: Question,
        admission: Admission,
        guard: Guard,
        on_passages: Callable[[list[Passage]], None] | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Answer:
        self.ready()
        clock = _FirstText(on_delta)

        def job(slot: int) -> Answer:
            clock.turn_at = time.perf_counter()
            # Taken on the slot, not before: a reload in between swaps every slot's pipeline.
            return self.pipelines[slot].ask(question, on_passages=on_passages,
                                            on_delta=clock.delta, guard=guard)

        started = time.perf_counter()
        try:
            answer = await anyio.to_thread.run_sync(admission.run, job, guard)
            self.metrics.answer(answer, clock.first_text_s)
            return answer
        except (errors.CancelledError, errors.DeadlineExceededError) as exc:
            # A stopped generation is worth a line: the access log cannot tell it from an answer.
            event = "cancelled" if isinstance(exc, errors.CancelledError) else "timeout"
            log.info(json.dumps({"event": event,
                                 "after_s": round(time.perf_counter() - started, 3)}))
            raise


@dataclass
class _FirstText:
    """When a question's first answer text came, from its turn at the model (for /metrics)."""

    on_delta: Callable[[str], None] | None
    turn_at: float = 0.0
    first_text_s: float | None = None

    def delta(self, text: str) -> None:
        if self.first_text_s is None:
            self.first_text_s = time.perf_counter() - self.turn_at
        if self.on_delta is not None:
            self.on_delta(text)


# How a route asks for the service (litestar injects it by this name).
ServiceDep = NamedDependency[Service]
