"""One model, many requests: a bounded queue in front of the pipeline.

llama.cpp contexts are not re-entrant, so requests take turns behind a lock. Waiting happens in
worker threads, never on the event loop, so health checks answer while a generation runs. A
request beyond ``max_waiting`` is turned away at once (HTTP 503) instead of piling up, and a
cancelled request (its client went away) gives up its turn or stops generating promptly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from rag.errors import CancelledError, RagError

T = TypeVar("T")


class ServiceBusyError(RagError):
    """Too many requests are already waiting for the model."""


class ModelGate:
    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._model = threading.Lock()
        self._counter = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    def run(self, job: Callable[[], T], cancelled: threading.Event | None = None) -> T:
        """Run ``job`` alone on the model; call from a worker thread."""
        with self._counter:
            if self._waiting >= self.max_waiting:
                raise ServiceBusyError(
                    f"{self._waiting} requests are already waiting for the model; retry shortly"
                )
            self._waiting += 1
        try:
            with self._model:
                if cancelled is not None and cancelled.is_set():
                    raise CancelledError("the client went away before its turn")
                return job()
        finally:
            with self._counter:
                self._waiting -= 1
