"""Many requests, a few model slots: a bounded queue in front of the pipelines.

The engine answers up to ``slots`` requests at once (``RAG_PARALLEL``), each on KV sequences of
its own, their decode steps shared (``rag.llm.scheduler``). A request takes a free slot, first
come first served; the others wait in worker threads, never on the event loop, so health checks
answer while generations run. A request is admitted (or turned away with HTTP 503) before its
response starts, streams included: beyond ``max_waiting`` admitted requests, ``admit`` refuses at
once instead of letting them pile up. An admitted request waits no longer than its guard
allows, and gives up its turn if its client went away meanwhile. ``run`` takes every slot, for
what must happen between requests (swapping in a new index).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from rag.errors import ServiceBusyError
from rag.guard import NO_GUARD, Guard

T = TypeVar("T")


class ModelGate:
    def __init__(self, max_waiting: int, slots: int = 1) -> None:
        self.max_waiting = max_waiting
        self.slots = slots
        self._free = list(range(slots))
        self._turns: deque[object] = deque()  # waiting takers, first come first
        self._cond = threading.Condition()
        self._counter = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Requests admitted and not yet finished (``max_waiting`` bounds them)."""
        return self._waiting

    @property
    def busy(self) -> int:
        """Slots taken now."""
        return self.slots - len(self._free)

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
        """Run ``job`` with every slot taken (nothing else on the model); from a worker thread."""
        taken = self._take(self.slots, guard)
        try:
            return job()
        finally:
            self._give(taken)

    def _take(self, count: int, guard: Guard) -> list[int]:
        """``count`` free slots, in turn; no longer than the guard allows."""
        turn = object()
        with self._cond:
            self._turns.append(turn)
            try:
                ready = self._cond.wait_for(
                    lambda: self._turns[0] is turn and len(self._free) >= count,
                    guard.remaining())
                if not ready:
                    guard.expired()
                taken, self._free = self._free[:count], self._free[count:]
                return taken
            finally:
                self._turns.remove(turn)
                self._cond.notify_all()

    def _give(self, slots: list[int]) -> None:
        with self._cond:
            self._free += slots
            self._cond.notify_all()

    def _leave(self) -> None:
        with self._counter:
            self._waiting -= 1


class Admission:
    """An admitted request's place in the queue; released once, whatever happens."""

    def __init__(self, gate: ModelGate) -> None:
        self._gate = gate
        self._released = False

    def run(self, job: Callable[[int], T], guard: Guard = NO_GUARD) -> T:
        """Wait for a slot (no longer than the guard allows), then run ``job`` on it."""
        try:
            taken = self._gate._take(1, guard)
            try:
                guard.check()  # the client may have gone while it waited
                return job(taken[0])
            finally:
                self._gate._give(taken)
        finally:
            self.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._leave()
