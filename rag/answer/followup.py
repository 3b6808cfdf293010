"""Follow-up questions: the words that point back into the conversation, replaced by what they
point at; the rest of the question is kept exactly as typed.

"When was she elected?" after "Who chairs the Lyon city council?" -> "Claire Martin" cannot be
retrieved or answered as it is. Regenerating the whole question lets a small model change its
meaning (a "what did he confirm" question came back as "who did <name> confirm"), so the model
is asked only what each pointing word stands for (``prompts/resolve_v1.txt``, one short
greedy call on its own KV sequence per word), and that phrase takes the word's place. A phrase
naming anything the conversation does not is not used. A question that points nowhere is passed
through without a call. The history is bounded: the last ``max_turns`` turns, and never more
than a token budget.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from rag.answer.prompts import PromptTemplate, quoted
from rag.guard import NO_GUARD, Guard
from rag.llm.engine import SequenceReader
from rag.retrieval.lexical import terms
from rag.types import Turn

_PRONOUN = r"he|she|it|they|him|them|his|hers|its|their|theirs|her|there|then"
# "that", "this" … point back only when they stand alone ("What was that seen as?"), not before
# a noun ("that order"): followed by punctuation, the end, or a verb of the question.
_VERBS = (r"is|was|were|are|be|been|did|does|do|has|have|had|will|would|can|could|seen|mean|"
          r"means|meant|say|said|happen|happened|cost|take|took|called")
_POINTING = re.compile(
    rf"\b(?:{_PRONOUN})\b|\b(?:that|this|those|these)\b(?=\s*(?:[?.,!;]|$|(?:{_VERBS})\b))",
    re.IGNORECASE,
)
_POSSESSIVE = frozenset({"his", "its", "their", "theirs", "hers"})
MAX_PHRASE_TOKENS = 24
HISTORY_TOKENS = 768  # the conversation shown to the model, newest turns kept


def pointing_words(question: str) -> list[re.Match[str]]:
    """The words of ``question`` that can only be understood from earlier turns."""
    return list(_POINTING.finditer(question))


def points_back(question: str, history: Sequence[Turn]) -> bool:
    return any(t.role == "user" for t in history) and bool(pointing_words(question))


@dataclass(eq=False)
class Resolver(SequenceReader):
    name: ClassVar[str] = "followup"
    template: PromptTemplate
    max_turns: int

    def standalone(self, question: str, history: Sequence[Turn],
                   guard: Guard = NO_GUARD) -> str:
        """``question`` with each pointing word replaced by what it stands for (a word whose
        referent the model cannot name from the conversation is left as typed)."""
        if not points_back(question, history):
            return question
        shown = self._shown(history)
        known = set(terms(" ".join(t.text for t in history)))
        found: dict[str, str | None] = {}
        pieces, end = [], 0
        # One read of the conversation for every word: each prompt differs only in its last line.
        # Dropped afterwards, as the answer needs the room.
        with self.engine.beyond(self.seq, self.prefix):
            for match in pointing_words(question):
                word = match.group(0)
                if word.lower() not in found:
                    phrase = self._referent(shown, question, word, guard)
                    found[word.lower()] = phrase if _grounded(phrase, known) else None
                referent = found[word.lower()]
                if referent is None:
                    continue
                phrase = _as_replacement(word, referent,
                                         question[match.end():].lstrip()[:1].isalpha())
                if match.start() == 0:
                    phrase = phrase[:1].upper() + phrase[1:]
                pieces += [question[end:match.start()], phrase]
                end = match.end()
        return "".join([*pieces, question[end:]])

    def claim(self) -> int:
        """Cells it holds while the answer is read: its fixed prefix (``rag.answer.budget``)."""
        return len(self.prefix)

    def _referent(self, shown: str, question: str, word: str, guard: Guard) -> str:
        """The model's greedy answer to what ``word`` stands for, on one line."""
        messages = self.template.messages(history=shown, question=question, word=word)
        pieces: list[bytes] = []
        logits = self.engine.sync(self.seq, self.engine.tokenize(self.engine.render(messages)),
                                  guard=guard)[0]
        for _ in range(MAX_PHRASE_TOKENS):
            token = int(np.argmax(logits))
            piece = self.engine.piece(token)
            if self.engine.is_end(token) or b"\n" in piece:
                pieces.append(piece.split(b"\n")[0])
                break
            pieces.append(piece)
            logits = self.engine.extend(self.seq, [token], guard=guard)[0]
        return b"".join(pieces).decode(errors="ignore").strip().strip("\"'.")

    @cached_property
    def prefix(self) -> list[int]:
        """The tokens every resolution prompt starts with: kept in the cache between calls."""
        return self.template.fixed_prefix(self.engine)

    def _shown(self, history: Sequence[Turn]) -> str:
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


def _grounded(phrase: str, known: set[str]) -> bool:
    """A usable referent: a short phrase whose every content word the conversation has."""
    named = set(terms(phrase))
    return bool(named) and len(phrase) <= 80 and named <= known


def _as_replacement(word: str, phrase: str, before_a_noun: bool) -> str:
    """The phrase in the word's grammatical place: possessive where the word was one."""
    possessive = word.lower() in _POSSESSIVE or (word.lower() == "her" and before_a_noun)
    if possessive and not phrase.endswith(("'s", "’s")):
        return phrase + "'s"
    if not possessive:
        return phrase.removesuffix("'s").removesuffix("’s")
    return phrase
