"""Follow-up questions: the last question of a conversation, rewritten to stand on its own.

"Where did he speak to reporters?" after "Who is Japan's foreign minister?" cannot be retrieved or
answered as it is. When earlier turns exist and the question points back into them (a pronoun or
a word such as "there" or "then"), one short greedy call on the model's third KV sequence
rewrites it ("Where did Toshimitsu Motegi speak to reporters?"); retrieval and the answer then
use the rewritten question. A question that points nowhere is passed through without a call.
The history is bounded: the last ``max_history_turns`` turns, and never more than a token budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rag.decoding import REWRITE_SEQ, Engine, shared_prefix
from rag.guard import NO_GUARD, Guard
from rag.prompts import PromptTemplate, quoted

# Words that can only be understood from earlier turns.
_POINTING = re.compile(
    r"\b(he|she|it|they|him|her|them|his|hers|its|their|theirs|that|this|those|these|there|"
    r"then|same|former|latter|one)\b",
    re.IGNORECASE,
)
MAX_REWRITE_TOKENS = 64
HISTORY_TOKENS = 768  # the conversation shown to the rewriter, newest turns kept


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


def needs_rewrite(question: str, history: list[Turn]) -> bool:
    return any(t.role == "user" for t in history) and bool(_POINTING.search(question))


class Rewriter:
    def __init__(self, engine: Engine, template: PromptTemplate, max_turns: int) -> None:
        self.engine = engine
        self.template = template
        self.max_turns = max_turns
        self.seq = engine.sequences[REWRITE_SEQ]

    def standalone(self, question: str, history: list[Turn], guard: Guard = NO_GUARD) -> str:
        """``question`` rewritten to stand alone, or unchanged when it needs no rewrite (or the
        model's rewrite is unusable)."""
        if not needs_rewrite(question, history):
            return question
        messages = self.template.messages(history=self._shown(history), question=question)
        logits = self.engine.sync(self.seq, self.engine.tokenize(self.engine.render(messages)),
                                  guard=guard)[0]
        banned = self._pointing_tokens(question)
        pieces: list[bytes] = []
        for _ in range(MAX_REWRITE_TOKENS):
            logits[banned] = -np.inf
            token = int(np.argmax(logits))
            piece = self.engine.piece(token)
            if self.engine.is_end(token) or b"\n" in piece:
                pieces.append(piece.split(b"\n")[0])
                break
            pieces.append(piece)
            logits = self.engine.extend(self.seq, [token], guard=guard)[0]
        self.engine.truncate(self.seq, len(self.prefix))  # the answer needs the room
        rewritten = b"".join(pieces).decode(errors="ignore").strip()
        return rewritten if _usable(rewritten, question) else question

    def _pointing_tokens(self, question: str) -> list[int]:
        """The single tokens spelling a pointing word of ``question``: a rewrite that writes
        them again has not resolved them (small models otherwise tend to copy the question)."""
        words = {m.group(0).lower() for m in _POINTING.finditer(question)}
        tokens: set[int] = set()
        for word in words:
            for form in (word, word.capitalize(), " " + word, " " + word.capitalize()):
                spelled = self.engine.tokenize(form)
                if len(spelled) == 1:
                    tokens.add(spelled[0])
        return sorted(tokens)

    @cached_property
    def prefix(self) -> list[int]:
        """The tokens every rewrite prompt starts with: kept in the cache between rewrites."""
        return shared_prefix(self.engine,
                             self.template.messages(history="A", question="A"),
                             self.template.messages(history="B", question="B"))

    def _shown(self, history: list[Turn]) -> str:
        """The last turns that fit the history budget, oldest first."""
        lines: list[str] = []
        used = 0
        for turn in reversed(history[-self.max_turns:]):
            speaker = "User" if turn.role == "user" else "Assistant"
            line = f"{speaker}: {quoted(' '.join(turn.text.split()))}"
            used += len(self.engine.tokenize(line))
            if used > HISTORY_TOKENS:
                break
            lines.append(line)
        return "\n".join(reversed(lines))


def _usable(rewritten: str, question: str) -> bool:
    """A rewrite is a question of reasonable length, not an answer or a ramble."""
    return bool(rewritten) and len(rewritten) <= 3 * len(question) + 200
