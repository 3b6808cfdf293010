"""Verification: the model's second look at one draft, against the sentences that support it.

Two readings of one prompt (``prompts/verify_v1.txt``: the quoted text, the question, the
proposed answer), on the answer model's own KV sequence for it (same weights, same context).
The text and the question are read once; each candidate answer is then read after them on a
sequence of its own that shares their cells (``check_seqs``), all candidates in the same steps:

* **P(yes)**: asked separately, with worked examples, whether the quoted text says that this
  answer answers this question, the model is far better calibrated than while answering
  ("Who is South Korea's president?" -> the Japanese defense minister gets a low P(yes)). It is
  read off the logits of the first reply token, not sampled.
* **Question PMI**: the question's tokens are read right after the quoted text, so the same
  batched read gives log P(each question token | the text); one short read of the question after
  an empty text gives log P(token | no text). Their difference, per token, says whether the text
  explains the question. A question with one thing changed (another name, an antonym, another
  year) has a token the text makes *less* likely.

Each verification starts from the fixed instructions, so its numbers do not depend on which
question came before (a shared cached prefix would change the batch split, and so the last
digits of the logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from rag.answer.prompts import PromptTemplate, quoted
from rag.guard import NO_GUARD, Guard
from rag.llm.engine import (
    KvSequence,
    Logits,
    SequenceReader,
    choice_probability,
    first_token_ids,
    token_logprob,
)

EVIDENCE_TOKENS = 256  # quoted evidence beyond this is cut
TEMPLATE_TOKENS = 48  # the user turn's own words and markers
TAIL_TOKENS = 40  # a candidate answer and the end of the prompt after it, on its own sequence
# Where the answer goes in the rendered prompt (no answer contains it).
_SLOT = "\x00answer\x00"
_YES = ("yes", "Yes", " yes", " Yes")
_NO = ("no", "No", " no", " No")
_QUESTION_LABEL = "\nQuestion:"


@dataclass(frozen=True)
class Verification:
    p_yes: float  # P("yes") that the text states the answer to the question
    question_pmi: list[float] | None  # per question token, when asked for


@dataclass(eq=False)
class Verifier(SequenceReader):
    name: ClassVar[str] = "verify"
    template: PromptTemplate
    max_answer_tokens: int
    check_seqs: tuple[KvSequence, ...] = ()  # one per candidate read beside the others

    def __post_init__(self) -> None:
        self._yes = first_token_ids(self.engine, _YES)
        self._no = first_token_ids(self.engine, _NO)

    def verify(self, question: str, answer: str, text: str, pmi: bool = False,
               guard: Guard = NO_GUARD) -> Verification:
        """P(yes) that ``text`` states ``answer`` as the answer to ``question``; with ``pmi``,
        also how much ``text`` raises each question token's log-probability."""
        p_yes, pmi_values = self.verify_each(question, [answer], text, pmi, guard)
        return Verification(p_yes[0], pmi_values)

    def verify_each(self, question: str, answers: list[str], text: str, pmi: bool = False,
                    guard: Guard = NO_GUARD) -> tuple[list[float], list[float] | None]:
        """P(yes) for each of ``answers``, ``text`` and ``question`` read once for all of them;
        with ``pmi``, how much ``text`` raises each question token's log-probability."""
        tokens = self.engine.tokenize(text)
        if len(tokens) > EVIDENCE_TOKENS:  # the context holds this much quoted evidence
            text = self.engine.detokenize(tokens[:EVIDENCE_TOKENS])
        head, asked, tails = self._tokens(quoted(text), question, answers)
        with self.engine.beyond(self.seq, self.prefix):
            outputs = [i - 1 for i in range(asked.start, asked.stop)] if pmi else [-1]
            given = self.engine.sync(self.seq, head, outputs=outputs, guard=guard)
            p_yes = self._verdicts(tails, guard)
        if not pmi:
            return p_yes, None
        empty, asked_alone, _ = self._tokens("", question, [""])
        prior = self._read(empty[:asked_alone.stop], asked_alone, guard)
        pmi_values = [round(token_logprob(g, t) - token_logprob(p, t), 4)
                      for g, p, t in zip(given, prior[:-1], head[asked], strict=True)]
        return p_yes, pmi_values

    def _verdicts(self, tails: list[list[int]], guard: Guard) -> list[float]:
        """P(yes) after each tail, read after what ``seq`` holds: side by side on the check
        sequences, else one after another on ``seq`` itself."""
        if not self.check_seqs:
            return [self._verdict_alone(tail, guard) for tail in tails]
        found: list[float] = []
        for start in range(0, len(tails), len(self.check_seqs)):
            group = tails[start:start + len(self.check_seqs)]
            seqs = self.check_seqs[:len(group)]
            self.engine.fork(self.seq, seqs)
            try:
                rows = self.engine.extend_each([(seq, tail, (-1,))
                                                for seq, tail in zip(seqs, group, strict=True)],
                                               guard)
            finally:
                self.engine.clear(*seqs)
            found += [choice_probability(row, self._yes, self._no) or 0.0 for row, in rows]
        return found

    def _verdict_alone(self, tail: list[int], guard: Guard) -> float:
        keep = len(self.seq.tokens)
        try:
            row = self.engine.extend(self.seq, tail, guard=guard)[0]
        finally:
            self.engine.truncate(self.seq, keep)
        return choice_probability(row, self._yes, self._no) or 0.0

    def claim(self, question: str) -> int:
        """The context a verification of the answers to ``question`` may take."""
        answers = self.max_answer_tokens + len(self.check_seqs) * TAIL_TOKENS
        return (len(self.prefix) + len(self.engine.tokenize(question))
                + answers + EVIDENCE_TOKENS + TEMPLATE_TOKENS)

    @cached_property
    def prefix(self) -> list[int]:
        """The tokens every verification prompt starts with: kept in the cache."""
        return self.template.fixed_prefix(self.engine)

    def _read(self, tokens: list[int], asked: slice, guard: Guard) -> list[Logits]:
        """Read ``tokens`` after the fixed prefix; the logits that predict each token of
        ``asked``, then those at the last position."""
        outputs = [i - 1 for i in range(asked.start, asked.stop)] + [-1]
        with self.engine.beyond(self.seq, self.prefix):
            return self.engine.sync(self.seq, tokens, outputs=outputs, guard=guard)

    def _tokens(self, text: str, question: str,
                answers: list[str]) -> tuple[list[int], slice, list[list[int]]]:
        """The prompt's tokens up to the proposed answer, where the question's own tokens are
        among them, and each answer's tokens with the rest of the prompt after it."""
        rendered = self.engine.render(self.template.messages(text=text, question=question,
                                                             answer=_SLOT))
        before, _, after = rendered.partition(_SLOT)
        at = before.rindex(_QUESTION_LABEL + " " + question) + len(_QUESTION_LABEL)
        opening = self.engine.tokenize(before[:at])
        asked = self.engine.tokenize(before[at:at + 1 + len(question)])
        # The space before the answer goes with it: the tokenizer reads " word" as one token.
        rest = before[at + 1 + len(question):]
        closing = self.engine.tokenize(rest.removesuffix(" "))
        space = " " if rest.endswith(" ") else ""
        tails = [self.engine.tokenize(f"{space}{answer}{after}") for answer in answers]
        head = opening + asked + closing
        return head, slice(len(opening), len(opening) + len(asked)), tails
