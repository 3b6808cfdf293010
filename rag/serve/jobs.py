"""Upload jobs: what a document upload is doing now, for ``GET /v1/documents/jobs/{id}``, and
the queue they wait in.

A job moves through stages (``received``, while it waits, -> ``checking`` -> ``indexing`` ->
``loading``) to ``done`` or ``failed``; the board keeps the latest ``KEPT`` jobs in memory, a
failed one for ``FAILED_KEPT_S`` (a restart forgets them: the documents list is what lasts),
each with at most ``NAMES_KEPT`` file names of ``NAME_CHARS`` characters.

Uploads are indexed one at a time by one worker thread of their own (the build is serialised
anyway), never by the threads that answer questions; beyond ``RAG_MAX_PENDING_UPLOADS`` waiting
(their files held in memory), an upload is refused with 503 and Retry-After.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

from rag.errors import ServiceBusyError, UnknownJobError
from rag.retrieval.store import UploadedDocument
from rag.serve.errors import error_body

KEPT = 200
FAILED_KEPT_S = 600.0
NAMES_KEPT = 50
NAME_CHARS = 200
POLL_S = 0.05  # how often a waiting request looks whether its job is done


@dataclass
class Job:
    files: list[str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    stage: str = "received"
    documents: list[UploadedDocument] = field(default_factory=list)
    error: dict[str, Any] | None = None  # the error body a waiting client would have got
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    # What a request that waits for the job raises (its own traceback dropped: it held the files).
    raised: Exception | None = None

    @property
    def status(self) -> str:
        if self.finished_at is None:
            return "running"
        return "failed" if self.error else "done"

    def move(self, stage: str) -> None:
        self.stage = stage

    def finish(self, documents: list[UploadedDocument] | None = None,
               error: dict[str, Any] | None = None) -> None:
        self.documents, self.error = documents or [], error
        self.stage = "failed" if error else "done"
        self.finished_at = time.time()

    def fail(self, exc: Exception, waited: bool) -> None:
        self.raised = exc.with_traceback(None) if waited else None
        self.finish(error=error_body(exc)[1]["error"])

    async def outcome(self) -> JobBody:
        """The job once finished; what failed it is raised (for the waiting request)."""
        while self.finished_at is None:
            await anyio.sleep(POLL_S)
        if self.raised is not None:
            raised, self.raised = self.raised, None
            raise raised
        return self.body()

    def body(self) -> JobBody:
        seconds = (self.finished_at or time.time()) - self.started_at
        return JobBody(job=self.id, status=self.status, stage=self.stage, files=self.files,
                       documents=self.documents, error=self.error, seconds=round(seconds, 3))


class JobBody(msgspec.Struct):
    """An upload job as ``POST /v1/documents`` and ``GET /v1/documents/jobs/{id}`` show it."""

    job: str
    status: str  # running, done or failed
    stage: str  # received, checking, indexing, loading, done or failed
    files: list[str]  # the names sent (at most NAMES_KEPT, each cut to NAME_CHARS)
    documents: list[UploadedDocument]  # once done: each file's document and what became of it
    error: dict[str, Any] | None  # once failed: the error body a waiting client got
    seconds: float


class JobBoard:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, files: list[str]) -> Job:
        shown = [name[:NAME_CHARS] for name in files[:NAMES_KEPT]]
        job = Job(shown + ([f"(and {len(files) - NAMES_KEPT} more)"]
                           if len(files) > NAMES_KEPT else []))
        with self._lock:
            expired = [j.id for j in self._jobs.values() if j.status == "failed"
                       and time.time() - (j.finished_at or 0.0) > FAILED_KEPT_S]
            for job_id in expired:
                del self._jobs[job_id]
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT:
                self._jobs.popitem(last=False)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJobError(f"no upload job {job_id!r} (only the latest {KEPT} are kept, "
                                  "and none survives a restart): GET /v1/documents lists what "
                                  "is indexed")
        return job


Work = Callable[[Job], list[UploadedDocument]]


class UploadQueue:
    """Upload jobs waiting for the one worker that runs them, at most ``limit`` of them."""

    def __init__(self, limit: int,
                 on_outcome: Callable[[str], None] = lambda outcome: None) -> None:
        self.limit = limit
        # Told "done", "failed" or "refused" (the queue was full) once per job.
        self.on_outcome = on_outcome
        self._pending: queue.Queue[tuple[Job, Work, bool]] = queue.Queue(limit)
        self.running = 0  # 1 while the worker indexes a job
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job, work: Work, waited: bool) -> None:
        """Queue ``work`` for ``job``; ServiceBusyError (503) when ``limit`` already wait, and
        ``job`` is failed with it (a refused job expires from the board like any failed one)."""
        try:
            self._pending.put_nowait((job, work, waited))
        except queue.Full:
            busy = ServiceBusyError(f"{self.limit} uploads are already waiting to be indexed "
                                    "(setting RAG_MAX_PENDING_UPLOADS): retry later")
            job.fail(busy, waited=False)
            self.on_outcome("refused")
            raise busy from None
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="rag-uploads",
                                                daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            job, work, waited = self._pending.get()
            self.running = 1
            try:
                job.finish(work(job))
            except Exception as exc:  # the job carries it to its client
                job.fail(exc, waited)
            finally:
                self.running = 0
            self.on_outcome(job.status)
            _return_freed_memory()

    @property
    def pending(self) -> int:
        """Jobs waiting for the worker (the one it runs is not counted)."""
        return self._pending.qsize()


def _return_freed_memory() -> None:
    """Give the heap an upload freed back to the system (glibc keeps it otherwise: after a flood
    of large multipart uploads the service stayed 0.9 GB above its loaded size)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, looked up once (find_library runs ldconfig); None elsewhere."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
