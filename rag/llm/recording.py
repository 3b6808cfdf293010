"""Every read an engine makes, recorded call by call by wrapping its methods: the latency bench
replays them as the llama.cpp floor, and the decoding tests count them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag.guard import NO_GUARD, Guard
from rag.llm.engine import Engine, KvSequence, Logits


@dataclass(frozen=True)
class Call:
    """One read of the engine: ``tokens`` into ``seq`` at ``start``, read or (``block``)
    appended from a stored state that was read at ``origin``, after ``lead`` and with its first
    ``fresh`` tokens read anew; or several sequences' reads side by side (``side``: each one's
    sequence, start, tokens and outputs); or ``seq``'s cells shared into ``fork_to`` (candidate
    answers)."""

    seq: KvSequence
    start: int
    tokens: list[int]
    outputs: tuple[int, ...] = ()
    block: Path | None = None
    origin: int = 0
    lead: tuple[int, ...] = ()
    fresh: int = 0
    side: tuple[tuple[KvSequence, int, list[int], tuple[int, ...]], ...] = ()
    fork_to: tuple[KvSequence, ...] = ()


@contextmanager
def recording(engine: Engine) -> Iterator[list[Call]]:
    """Record every read the engine makes, every stored block it appends and every fork."""
    calls: list[Call] = []
    in_block = False  # a block's own reads are replayed with the block, not apart

    def extend(seq: KvSequence, tokens: Sequence[int], outputs: Sequence[int] = (-1,),
               guard: Guard = NO_GUARD) -> list[Logits]:
        if not in_block:
            calls.append(Call(seq, len(seq.tokens), list(tokens), tuple(outputs)))
        return Engine.extend(engine, seq, tokens, outputs, guard)

    def extend_each(reads: Sequence[tuple[KvSequence, Sequence[int], Sequence[int]]],
                    guard: Guard = NO_GUARD) -> list[list[Logits]]:
        side = tuple((seq, len(seq.tokens), list(tokens), tuple(outputs))
                     for seq, tokens, outputs in reads)
        calls.append(Call(reads[0][0], len(reads[0][0].tokens), [], side=side))
        return Engine.extend_each(engine, reads, guard)

    def insert_block(seq: KvSequence, path: Path, tokens: Sequence[int], origin: int,
                     lead: Sequence[int] = (), fresh: int = 0, guard: Guard = NO_GUARD) -> bool:
        nonlocal in_block
        calls.append(Call(seq, len(seq.tokens), list(tokens), block=path, origin=origin,
                          lead=tuple(lead), fresh=fresh))
        in_block = True
        try:
            return Engine.insert_block(engine, seq, path, tokens, origin, lead, fresh, guard)
        finally:
            in_block = False

    def fork(source: KvSequence, targets: Sequence[KvSequence]) -> None:
        if targets:  # a fork into no sequence reads and shares nothing
            calls.append(Call(source, len(source.tokens), [], fork_to=tuple(targets)))
        Engine.fork(engine, source, targets)

    engine.extend = extend  # type: ignore[method-assign]
    engine.extend_each = extend_each  # type: ignore[method-assign]
    engine.insert_block = insert_block  # type: ignore[method-assign]
    engine.fork = fork  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del engine.extend, engine.extend_each, engine.insert_block, engine.fork
