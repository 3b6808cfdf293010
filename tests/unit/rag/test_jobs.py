"""Upload jobs and their queue, without a model: one worker, a bound, bounded records."""

import threading
import time
from typing import Any

import anyio
import pytest

from rag.errors import DocumentRejectedError, ServiceBusyError, UnknownJobError
from rag.serve import jobs
from rag.serve.jobs import Job, JobBoard, UploadQueue


def _finished(job: Job, timeout_s: float = 10.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while job.finished_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return job


def test_uploads_beyond_the_pending_limit_are_turned_away_and_the_rest_run_in_order() -> None:
    board, uploads = JobBoard(), UploadQueue(limit=2)
    started, release, order, threads = threading.Event(), threading.Event(), [], set()

    def work(job: Job) -> list[dict[str, Any]]:
        order.append(job.files[0])
        threads.add(threading.current_thread().name)
        started.set()
        release.wait(10)
        return [{"name": job.files[0]}]

    first = board.create(["first.txt"])
    uploads.submit(first, work, waited=False)
    assert started.wait(10)  # the worker holds the first: two more may wait
    waiting = [board.create([name]) for name in ("second.txt", "third.txt")]
    for job in waiting:
        uploads.submit(job, work, waited=False)
    refused = board.create(["fourth.txt"])
    with pytest.raises(ServiceBusyError, match="RAG_MAX_PENDING_UPLOADS"):
        uploads.submit(refused, work, waited=False)
    assert refused.status == "failed", "a refused job must not stay 'running' on the board"
    assert (uploads.running, uploads.pending) == (1, 2)  # what /metrics shows
    release.set()
    assert [_finished(j).status for j in (first, *waiting)] == ["done"] * 3
    deadline = time.monotonic() + 10  # the worker marks itself idle just after the job ends
    while uploads.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (uploads.running, uploads.pending) == (0, 0)
    assert order == ["first.txt", "second.txt", "third.txt"]
    assert threads == {"rag-uploads"}  # not a thread of the pool that answers questions


def test_a_waiting_request_gets_the_error_a_background_job_records() -> None:
    uploads = UploadQueue(limit=1)

    def refuse(job: Job) -> list[dict[str, Any]]:
        raise DocumentRejectedError([("a.txt", "a.txt is empty")], 1)

    waited, background = Job(["a.txt"]), Job(["a.txt"])
    uploads.submit(waited, refuse, waited=True)
    with pytest.raises(DocumentRejectedError, match=r"a\.txt is empty"):
        anyio.run(waited.outcome)
    uploads.submit(background, refuse, waited=False)
    assert _finished(background).status == "failed" and background.raised is None
    assert background.error is not None and background.error["details"][0]["file"] == "a.txt"


def test_job_records_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    board = JobBoard()
    many = board.create([f"{i:04d}" + "x" * 5000 for i in range(7000)])
    assert len(many.files) == jobs.NAMES_KEPT + 1 and many.files[-1] == "(and 6950 more)"
    assert max(len(name) for name in many.files) == jobs.NAME_CHARS
    many.finish(error={"message": "refused", "type": "document_rejected"})
    kept = board.create(["kept.txt"])
    assert board.get(many.id) is many
    later = time.time() + jobs.FAILED_KEPT_S + 1
    monkeypatch.setattr(jobs.time, "time", lambda: later)
    board.create(["next.txt"])
    assert board.get(kept.id) is kept
    with pytest.raises(UnknownJobError):
        board.get(many.id)
