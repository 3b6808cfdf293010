"""The context budget, in one place: which retrieved passages fit one question's prompt.

The answer, its verification and the follow-up resolver share one llama.cpp context. Before the
answer prompt is read, every other claim the same question may make on the context is set aside
(each component states its own: ``claim``), and passages are dropped from the lowest rank until
the answer prompt and its reply fit what is left.
"""

from __future__ import annotations

from collections.abc import Callable

from rag.errors import ContextFullError
from rag.types import Passage


def passages_that_fit(n_ctx: int, passages: list[Passage], answer_claim: Callable[[list[Passage]],
                      int], other_claims: list[int]) -> tuple[list[Passage], list[Passage]]:
    """The best passages whose answer (``answer_claim`` of them) fits beside ``other_claims``,
    and those dropped, best first. ContextFullError when not even one passage fits."""
    room = n_ctx - sum(other_claims)
    for keep in range(len(passages), 0, -1):
        if answer_claim(passages[:keep]) <= room:
            return passages[:keep], passages[keep:]
    raise ContextFullError(
        f"with the instructions and one passage the question does not fit the model's context "
        f"of {n_ctx} tokens (setting RAG_N_CTX); ask a shorter question"
    )
