"""Continuous batching: the reads of every request in flight, one ``llama_decode`` per step.

Each request runs in its own thread on KV sequences of its own and hands every read
(``Engine.extend``) to the scheduler, which waits in ``read``. A step is one batch made of:

1. the next token of every request that is generating (a one-token read), all of them;
2. then prompt tokens of the reads waiting, oldest first: at most ``prefill_slice`` tokens in
   all while some request is generating (chunked prefill: a long prompt never holds the others
   up for more than a slice), a whole ``n_batch`` when none is.

A decode step of a small model on a CPU costs about as much for several sequences as for one
(it is bound by reading the weights), so requests that generate together share their steps. To
keep them together, the requests whose read finished in the last step are waited for up to
``gather_s`` before the next step starts (their threads only pick the next token in between).
Alone, a request's reads are cut exactly as the engine cuts them without a scheduler, so its
numbers are those of the single-request path.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from rag.guard import Guard

Logits = npt.NDArray[np.single]
# One part of a step: a KV sequence (the engine's, passed through), its tokens, the rows
# (indices into them) whose logits are returned.
Part = tuple[object, list[int], tuple[int, ...]]
Decode = Callable[[list[Part]], list[list[Logits]]]
WAKE_S = 0.05  # how often a waiting request looks at its guard


@dataclass(eq=False)
class Read:
    seq: object
    tokens: list[int]
    wanted: tuple[int, ...]  # indices into tokens whose logits are returned
    order: int
    arrived: int  # the step count when it arrived
    done: int = 0  # tokens read so far
    in_step: bool = False
    rows: dict[int, Logits] = field(default_factory=dict)
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def left(self) -> int:
        return len(self.tokens) - self.done


@dataclass
class StepStats:
    steps: int = 0
    tokens: int = 0
    shared_steps: int = 0  # steps that carried the reads of more than one request
    widest: int = 0  # most requests in one step
    most_steps_waited: int = 0  # most steps that ran between a read's arrival and its first
    most_prompt_beside_decoding: int = 0  # most prompt tokens in a step with generating ones


class Scheduler:
    def __init__(self, decode: Decode, n_batch: int, prefill_slice: int,
                 gather_s: float = 0.004) -> None:
        self._decode = decode
        self.n_batch = n_batch
        self.prefill_slice = max(1, min(prefill_slice, n_batch))
        self.gather_s = gather_s
        self.stats = StepStats()
        self._pending: list[Read] = []
        self._last: set[int] = set()  # ids of the sequences whose read finished last step
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="rag-scheduler", daemon=True)
        self._thread.start()

    def read(self, seq: object, tokens: Sequence[int], wanted: Sequence[int],
             guard: Guard) -> dict[int, Logits]:
        """Read ``tokens`` after what ``seq`` holds in the steps to come; the logits at
        ``wanted``. A cancelled or overdue request is withdrawn before its next step."""
        return self.read_many([(seq, tokens, wanted)], guard)[0]

    def read_many(self, parts: Sequence[tuple[object, Sequence[int], Sequence[int]]],
                  guard: Guard) -> list[dict[int, Logits]]:
        """``read`` of several sequences of one request at once (candidate answers side by
        side): they arrive together, so they share the steps to come."""
        guard.check()
        with self._cond:
            reads = [Read(seq, list(tokens), tuple(wanted), next(self._order), self.stats.steps)
                     for seq, tokens, wanted in parts]
            self._pending.extend(reads)
            self._cond.notify_all()
        for read in reads:
            while not read.finished.wait(WAKE_S):
                try:
                    guard.check()
                except Exception:
                    if all([self._withdraw(r) for r in reads if not r.finished.is_set()]):
                        raise
        for read in reads:
            if read.error is not None:
                raise read.error
        return [read.rows for read in reads]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    # ---- the scheduler's thread ------------------------------------------------------------

    def _withdraw(self, read: Read) -> bool:
        """Take ``read`` out unless it is being decoded now (then it finishes this step)."""
        with self._cond:
            if read.in_step or read.finished.is_set():
                return False
            if read in self._pending:
                self._pending.remove(read)
            return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                self._gather()
                step = self._plan()
            self._run(step)

    def _gather(self) -> None:
        """Wait (briefly) for the requests of the last step to come back with their next read."""
        deadline = time.monotonic() + self.gather_s
        while self._last - {id(r.seq) for r in self._pending}:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _plan(self) -> list[tuple[Read, int]]:
        """This step's reads and how many tokens of each, per the rules above."""
        decoding = [r for r in self._pending if len(r.tokens) == 1]
        prompts = sorted((r for r in self._pending if len(r.tokens) > 1), key=lambda r: r.order)
        room = self.n_batch - len(decoding)
        budget = min(room, self.prefill_slice) if decoding else room
        step = [(r, 1) for r in decoding]
        for read in prompts:
            if budget <= 0:
                break
            take = min(read.left, budget)
            step.append((read, take))
            budget -= take
        for read, _ in step:
            read.in_step = True
        return step

    def _run(self, step: list[tuple[Read, int]]) -> None:
        parts: list[Part] = []
        for read, take in step:
            start = read.done
            marks = tuple(i - start for i in read.wanted if start <= i < start + take)
            parts.append((read.seq, read.tokens[start:start + take], marks))
        failure: Exception | None = None
        rows: list[list[Logits]] = []
        try:
            rows = self._decode(parts)
        except Exception as exc:  # every read of the failed step fails with it
            failure = exc
        finished: set[int] = set()
        with self._cond:
            for i, (read, take) in enumerate(step):
                read.in_step = False
                if failure is not None:
                    read.error = failure
                else:
                    for mark, row in zip(parts[i][2], rows[i], strict=True):
                        read.rows[read.done + mark] = row
                    read.done += take
                if failure is not None or read.left == 0:
                    self._pending.remove(read)
                    finished.add(id(read.seq))
                    read.finished.set()
            self._last = finished
            self._count(step)

    def _count(self, step: list[tuple[Read, int]]) -> None:
        stats = self.stats
        for read, take in step:
            if read.done == take:  # its first tokens were read in this step
                stats.most_steps_waited = max(stats.most_steps_waited, stats.steps - read.arrived)
        if any(len(read.tokens) == 1 for read, _ in step):
            prompt = sum(take for read, take in step if len(read.tokens) > 1)
            stats.most_prompt_beside_decoding = max(stats.most_prompt_beside_decoding, prompt)
        stats.steps += 1
        stats.tokens += sum(take for _, take in step)
        stats.shared_steps += len(step) > 1
        stats.widest = max(stats.widest, len(step))
