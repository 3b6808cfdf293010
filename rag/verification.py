"""Verification: a second, narrow question to the model about one answer.

Small models pick a name from the passages even when the passages give it another role ("Who is
South Korea's president?" -> the Japanese defense minister). Asked separately, with worked
examples, whether the quoted text says that this answer answers this question, the same model
is far better calibrated. We read the probability of "yes" from the first token's logits
instead of sampling it. The verifier runs on its own llama.cpp context, so the answer prompt and
the verification prompt each keep their fixed prefix in the KV cache.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import numpy.typing as npt

from rag.model_loading import GeneratorModel, Logits, choice_probability
from rag.prompts import PromptTemplate

_YES = ("yes", "Yes", " yes", " Yes")
_NO = ("no", "No", " no", " No")


class Verifier:
    def __init__(self, model: GeneratorModel, template: PromptTemplate) -> None:
        self.model = model
        self.template = template

    def probability(self, question: str, answer: str, text: str) -> float:
        """P(yes) that ``text`` states ``answer`` as the answer to ``question``."""
        messages = self.template.messages(text=text, question=question, answer=answer)
        captured: list[float] = []

        def capture(_: npt.NDArray[np.intc], logits: Logits) -> Logits:
            if not captured:
                captured.append(choice_probability(logits, self._yes_ids, self._no_ids) or 0.0)
            return logits

        self.model.llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            temperature=0.0,
            max_tokens=1,
            logits_processor=[capture],  # type: ignore[arg-type]
        )
        return captured[0] if captured else 0.0

    def warm_up(self) -> None:
        self.model.prime(self.template.messages(text="", question="?", answer=""))

    @cached_property
    def _yes_ids(self) -> list[int]:
        return self.model.first_token_ids(_YES)

    @cached_property
    def _no_ids(self) -> list[int]:
        return self.model.first_token_ids(_NO)
