"""Verification: a second, narrow question to the model about one answer.

Small models pick a name from the passages even when the passages give it another role ("Who is
South Korea's president?" -> the Japanese defense minister). Asked separately, with worked
examples, whether the quoted text says that this answer answers this question, the same model
is far better calibrated. We read the probability of "yes" from the logits of the first reply
token instead of sampling it.

It runs on the answer model's second KV sequence (``rag.decoding``): same weights, same
context, its own fixed prefix (the instructions and examples), which is read once and kept.
"""

from __future__ import annotations

from functools import cached_property

from rag.decoding import (
    VERIFY_SEQ,
    Engine,
    choice_probability,
    first_token_ids,
    shared_prefix,
)
from rag.guard import NO_GUARD, Guard
from rag.prompts import PromptTemplate, quoted

EVIDENCE_TOKENS = 256  # quoted evidence beyond this is cut
TEMPLATE_TOKENS = 48  # the user turn's own words and markers
_YES = ("yes", "Yes", " yes", " Yes")
_NO = ("no", "No", " no", " No")


class Verifier:
    def __init__(self, engine: Engine, template: PromptTemplate) -> None:
        self.engine = engine
        self.template = template
        self.seq = engine.sequences[VERIFY_SEQ]
        self._yes = first_token_ids(engine, _YES)
        self._no = first_token_ids(engine, _NO)

    def probability(self, question: str, answer: str, text: str,
                    guard: Guard = NO_GUARD) -> float:
        """P(yes) that ``text`` states ``answer`` as the answer to ``question``."""
        tokens = self.engine.tokenize(text)
        if len(tokens) > EVIDENCE_TOKENS:  # the context holds this much quoted evidence
            text = self.engine.detokenize(tokens[:EVIDENCE_TOKENS])
        messages = self.template.messages(text=quoted(text), question=question, answer=answer)
        tokens = self.engine.tokenize(self.engine.render(messages))
        logits = self.engine.sync(self.seq, tokens, guard=guard)[0]
        return choice_probability(logits, self._yes, self._no) or 0.0

    def reserve(self, question: str, max_answer_tokens: int) -> int:
        """The context a verification of an answer to ``question`` may take."""
        return (len(self.prefix) + len(self.engine.tokenize(question))
                + max_answer_tokens + EVIDENCE_TOKENS + TEMPLATE_TOKENS)

    @cached_property
    def prefix(self) -> list[int]:
        """The tokens every verification prompt starts with: kept in the cache."""
        return shared_prefix(self.engine,
                             self.template.messages(text="A", question="A", answer="A"),
                             self.template.messages(text="B", question="B", answer="B"))
