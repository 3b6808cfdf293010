"""When a request must stop: its client went away, or its time is up.

One ``Guard`` is made when a request arrives (HTTP) or a question is asked (CLI, eval) and
travels with it: the model gate waits for the model no longer than the time left, and the
decoding loop checks it before every llama.cpp call, so a cancelled or overdue request frees the
model within one step.
"""

from __future__ import annotations

import threading
import time

from rag.errors import CancelledError, DeadlineExceededError


class Guard:
    def __init__(self, cancelled: threading.Event | None = None,
                 timeout_s: float | None = None) -> None:
        self.cancelled = cancelled
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def check(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise CancelledError("the client went away")
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.expired()

    def remaining(self) -> float | None:
        """Seconds left, or None without a deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def expired(self) -> None:
        raise DeadlineExceededError(
            f"the request took longer than {self.timeout_s:g} s (setting RAG_REQUEST_TIMEOUT_S)"
        )


NO_GUARD = Guard()
