"""Upload jobs: what a document upload is doing now, for ``GET /v1/documents/jobs/{id}``.

A job moves through stages (``received`` -> ``checking`` -> ``indexing`` -> ``loading``) to
``done`` or ``failed``; the board keeps the latest ``KEPT`` jobs in memory (a restart forgets
them: the documents list is what lasts).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from rag.errors import UnknownJobError

KEPT = 200


@dataclass
class Job:
    files: list[str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    stage: str = "received"
    documents: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None  # the error body a waiting client would have got
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def status(self) -> str:
        if self.finished_at is None:
            return "running"
        return "failed" if self.error else "done"

    def move(self, stage: str) -> None:
        self.stage = stage

    def finish(self, documents: list[dict[str, Any]] | None = None,
               error: dict[str, Any] | None = None) -> None:
        self.documents, self.error = documents or [], error
        self.stage = "failed" if error else "done"
        self.finished_at = time.time()

    def to_dict(self) -> dict[str, Any]:
        seconds = (self.finished_at or time.time()) - self.started_at
        return {"job": self.id, "status": self.status, "stage": self.stage, "files": self.files,
                "documents": self.documents, "error": self.error, "seconds": round(seconds, 3)}


class JobBoard:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, files: list[str]) -> Job:
        job = Job(files)
        with self._lock:
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
