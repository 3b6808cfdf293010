"""One model, many requests: a bounded queue in front of the pipeline.

llama.cpp contexts are not re-entrant, so requests take turns behind a lock. Waiting happens in
worker threads, never on the event loop, so health checks answer while a generation runs. A
request is admitted (or turned away with HTTP 503) before its response starts, streams included:
beyond ``max_waiting`` admitted requests, ``admit`` refuses at once instead of letting them pile
up. An admitted request waits no longer than its guard allows, and gives up its turn if its
client went away meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from rag.errors import ServiceBusyError
from rag.guard import NO_GUARD, Guard

T = TypeVar("T")


class ModelGate:
    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._model = threading.Lock()
        self._counter = threading.Lock()
        self._waiting = 0

    def admit(self) -> Admission:
        """A place in the queue, or ServiceBusyError when the queue is full."""
        with self._counter:
            if self._waiting >= self.max_waiting:
                raise ServiceBusyError(
                    f"{self._waiting} requests are already waiting for the model; retry shortly"
                )
            self._waiting += 1
        return Admission(self)

    def run(self, job: Callable[[], T], guard: Guard = NO_GUARD) -> T:
        """Admit and run ``job`` alone on the model; call from a worker thread."""
        return self.admit().run(job, guard)

    def _leave(self) -> None:
        with self._counter:
            self._waiting -= 1


class Admission:
    """An admitted request's place in the queue; released once, whatever happens."""

    def __init__(self, gate: ModelGate) -> None:
        self._gate = gate
        self._released = False

    def run(self, job: Callable[[], T], guard: Guard = NO_GUARD) -> T:
        """Wait for the model (no longer than the guard allows), then run ``job``."""
        try:
            remaining = guard.remaining()
            if not self._gate._model.acquire(timeout=-1 if remaining is None else remaining):
                guard.expired()
            try:
                guard.check()  # the client may have gone while it waited
                return job()
            finally:
                self._gate._model.release()
        finally:
            self.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._leave()
