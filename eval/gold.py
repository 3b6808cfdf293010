"""Gold question sets: one JSON object a line.

``{"id", "question", "answers": [...], "evidence": [...], "answerable": bool}``, optionally
``"doc"`` (the name of the document the question is about, kept for ``python -m eval --doc``),
``"history"`` (earlier turns ``[{"role": "user"|"assistant", "content": str}]``: the question is
a follow-up to them) and ``"kind"`` (``KINDS``: a fact the text states, a small computation from
it, or an unanswerable question that is tempting — the text names a related person, number or
date — or plainly absent); other keys are allowed and ignored. ``evidence`` holds exact substrings
of the documents. An answer is a string, or a list of the parts a whole answer must name.

Sets kept apart must not ask the same thing twice: ``near_duplicates`` finds question pairs of
two sets that are paraphrases by words or by meaning.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import Gold
from rag.errors import InputError
from rag.retrieval.embedder import Embedder
from rag.retrieval.lexical import terms

REQUIRED = {"id": str, "question": str, "answers": list, "evidence": list, "answerable": bool}
KINDS = {True: ("fact", "computed"), False: ("tempting", "absent")}


@dataclass(frozen=True)
class GoldItem:
    id: str
    question: str
    answers: tuple[Gold, ...]
    evidence: tuple[str, ...]
    answerable: bool
    doc: str | None = None
    # Earlier turns of a conversation, oldest first: (role, text); the question follows them.
    history: tuple[tuple[str, str], ...] = ()
    # What kind of question it is, where the set says (KINDS).
    kind: str | None = None


def load_gold(path: Path) -> list[GoldItem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read gold file {path}: {exc.strerror or exc}") from None
    items = [_item(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise InputError(f"gold file {path} holds no questions")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"gold file {path}: id {item.id!r} appears twice")
        seen.add(item.id)
    return items


def select(
    items: list[GoldItem], limit: int | None, sample: int | None, seed: int
) -> list[GoldItem]:
    """A fixed random ``sample`` (same seed, same questions), then the first ``limit``."""
    if sample is not None and sample < len(items):
        items = random.Random(seed).sample(items, sample)
    return items[:limit] if limit is not None else items


def _item(path: Path, number: int, line: str) -> GoldItem:
    where = f"gold file {path}, line {number}"
    try:
        record: Any = json.loads(line)
    except ValueError as exc:
        raise InputError(f"{where}: not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object")
    for key, expected in REQUIRED.items():
        if not isinstance(record.get(key), expected):
            raise InputError(f"{where}: {key!r} must be a {expected.__name__}")
    doc = record.get("doc")
    if doc is not None and not isinstance(doc, str):
        raise InputError(f"{where}: 'doc' must be a str when present")
    kind = record.get("kind")
    if kind is not None and kind not in KINDS[record["answerable"]]:
        raise InputError(f"{where}: 'kind' of an {'' if record['answerable'] else 'un'}answerable "
                         f"question must be one of {', '.join(KINDS[record['answerable']])}")
    return GoldItem(
        id=record["id"],
        question=record["question"],
        answers=tuple(_answer(where, answer) for answer in record["answers"]),
        evidence=tuple(map(str, record["evidence"])),
        answerable=record["answerable"],
        doc=doc,
        history=_history(where, record.get("history", [])),
        kind=kind,
    )


def _answer(where: str, answer: Any) -> Gold:
    if isinstance(answer, str):
        return answer
    if isinstance(answer, list) and answer and all(isinstance(part, str) for part in answer):
        return tuple(answer)
    raise InputError(f"{where}: each answer must be a string or a list of strings (its parts)")


def _history(where: str, turns: Any) -> tuple[tuple[str, str], ...]:
    valid = isinstance(turns, list) and all(
        isinstance(t, dict) and t.get("role") in {"user", "assistant"}
        and isinstance(t.get("content"), str) for t in turns
    )
    if not valid:
        raise InputError(f"{where}: 'history' must be a list of {{role: user|assistant, "
                         "content: str}}")
    return tuple((t["role"], t["content"]) for t in turns)


# Paraphrase thresholds, set so that every pair of a tuning and a test question found asking the
# same thing (t13/a50 at cosine 0.81 is the lowest of them) counts as one.
NEAR_COSINE = 0.80  # all-MiniLM-L6-v2 cosine of the two questions
NEAR_JACCARD = 0.6  # shared content terms (stemmed, stop words out) over all of them


@dataclass(frozen=True)
class NearDuplicate:
    question: GoldItem
    other: GoldItem
    cosine: float
    jaccard: float


def near_duplicates(items: list[GoldItem], others: list[GoldItem],
                    embedder: Embedder) -> list[NearDuplicate]:
    """Each question of ``items`` that paraphrases one of ``others``: its closest match by
    meaning or by words is within a threshold."""
    vectors = embedder.encode([item.question for item in items])
    other_vectors = embedder.encode([other.question for other in others])
    cosines = vectors @ other_vectors.T
    found = []
    for i, item in enumerate(items):
        for j, other in enumerate(others):
            jaccard = _jaccard(item.question, other.question)
            if cosines[i, j] >= NEAR_COSINE or jaccard >= NEAR_JACCARD:
                found.append(NearDuplicate(item, other, float(cosines[i, j]), jaccard))
    return found


def _jaccard(a: str, b: str) -> float:
    x, y = set(terms(a)), set(terms(b))
    return len(x & y) / len(x | y) if x | y else 0.0
