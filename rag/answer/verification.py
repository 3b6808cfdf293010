"""Verification: the model's second look at one draft, against the sentences that support it.

Two readings of one prompt (``prompts/verify_v1.txt``: the quoted text, the question, the
proposed answer), on the answer model's own KV sequence for it (same weights, same context):

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

from rag.answer.prompts import PromptTemplate, quoted
from rag.guard import NO_GUARD, Guard
from rag.llm.engine import (
    Logits,
    SequenceReader,
    choice_probability,
    first_token_ids,
    shared_prefix,
    token_logprob,
)

EVIDENCE_TOKENS = 256  # quoted evidence beyond this is cut
TEMPLATE_TOKENS = 48  # the user turn's own words and markers
_YES = ("yes", "Yes", " yes", " Yes")
_NO = ("no", "No", " no", " No")
_QUESTION_LABEL = "\nQuestion:"


@dataclass(frozen=True)
class Verification:
    p_yes: float  # P("yes") that the text states the answer to the question
    question_pmi: list[float] | None  # per question token, when asked for


@dataclass(eq=False)
class Verifier(SequenceReader):
    template: PromptTemplate
    max_answer_tokens: int

    def __post_init__(self) -> None:
        self._yes = first_token_ids(self.engine, _YES)
        self._no = first_token_ids(self.engine, _NO)

    def verify(self, question: str, answer: str, text: str, pmi: bool = False,
               guard: Guard = NO_GUARD) -> Verification:
        """P(yes) that ``text`` states ``answer`` as the answer to ``question``; with ``pmi``,
        also how much ``text`` raises each question token's log-probability."""
        tokens = self.engine.tokenize(text)
        if len(tokens) > EVIDENCE_TOKENS:  # the context holds this much quoted evidence
            text = self.engine.detokenize(tokens[:EVIDENCE_TOKENS])
        prompt, asked = self._tokens(quoted(text), question, answer)
        given = self._read(prompt, asked, guard)
        p_yes = choice_probability(given[-1], self._yes, self._no) or 0.0
        if not pmi:
            return Verification(p_yes, None)
        empty, asked_alone = self._tokens("", question, "")
        prior = self._read(empty[:asked_alone.stop], asked_alone, guard)
        question_tokens = prompt[asked]
        pmi_values = [round(token_logprob(g, t) - token_logprob(p, t), 4)
                      for g, p, t in zip(given[:-1], prior[:-1], question_tokens, strict=True)]
        return Verification(p_yes, pmi_values)

    def claim(self, question: str) -> int:
        """The context a verification of an answer to ``question`` may take."""
        return (len(self.prefix) + len(self.engine.tokenize(question))
                + self.max_answer_tokens + EVIDENCE_TOKENS + TEMPLATE_TOKENS)

    @cached_property
    def prefix(self) -> list[int]:
        """The tokens every verification prompt starts with: kept in the cache."""
        return shared_prefix(self.engine,
                             self.template.messages(text="A", question="A", answer="A"),
                             self.template.messages(text="B", question="B", answer="B"))

    def _read(self, tokens: list[int], asked: slice, guard: Guard) -> list[Logits]:
        """Read ``tokens`` after the fixed prefix; the logits that predict each token of
        ``asked``, then those at the last position."""
        outputs = [i - 1 for i in range(asked.start, asked.stop)] + [-1]
        with self.engine.beyond(self.seq, len(self.prefix)):
            return self.engine.sync(self.seq, tokens, outputs=outputs, guard=guard)

    def _tokens(self, text: str, question: str, answer: str) -> tuple[list[int], slice]:
        """The prompt's tokens, and where the question's own tokens are among them."""
        rendered = self.engine.render(self.template.messages(text=text, question=question,
                                                             answer=answer))
        at = rendered.rindex(_QUESTION_LABEL + " " + question) + len(_QUESTION_LABEL)
        head = self.engine.tokenize(rendered[:at])
        asked = self.engine.tokenize(rendered[at:at + 1 + len(question)])
        tail = self.engine.tokenize(rendered[at + 1 + len(question):])
        return head + asked + tail, slice(len(head), len(head) + len(asked))
