"""The question pipeline: rewrite -> retrieve -> draft -> check citations -> measure -> decide.

``Pipeline.ask`` is the one function the CLI, the HTTP service and the eval harness call; it
only orchestrates. Each stage is its own module (``rag.retrieval``, ``rag.answer``), the decision
is ``rag.decision``, and building a pipeline (models, index, warm-up) is ``rag.factory``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from rag.answer.arithmetic import with_unit
from rag.answer.budget import passages_that_fit
from rag.answer.citations import CitationChecker, SupportReport
from rag.answer.drafting import DeltaCallback, Draft, Drafter
from rag.answer.followup import Resolver
from rag.answer.prompts import PromptReader
from rag.answer.verification import Verifier
from rag.decision.policy import QUESTION_PMI, REFUSAL_ANSWER, VERIFICATION, Policy, Verdict
from rag.guard import Guard
from rag.retrieval.embedder import Vectors
from rag.retrieval.search import Retriever
from rag.retrieval.store import StoredIndex
from rag.types import (
    Answer,
    CandidateTrace,
    Chunk,
    Citation,
    Passage,
    Question,
    Timings,
    Trace,
)

PassagesCallback = Callable[[list[Passage]], None]


@dataclass(frozen=True)
class Pipeline:
    retriever: Retriever
    resolver: Resolver
    drafter: Drafter
    checker: CitationChecker
    verifier: Verifier | None  # None when the policy measures nothing (a small generator)
    policy: Policy
    timeout_s: float  # a request's time when the caller gives no guard
    # Measure every draft fully and record every gate's verdict, whatever the decision needs
    # (the eval harness does, so other policies can be replayed on its reports).
    explain: bool = False

    @property
    def readers(self) -> list[PromptReader]:
        """Every reader of the model, each on its own KV sequence with its fixed prefix."""
        verifier = [self.verifier] if self.verifier is not None else []
        return [self.drafter, *verifier, self.resolver]

    @property
    def index(self) -> StoredIndex:
        return self.retriever.index

    @property
    def model_name(self) -> str:
        return self.drafter.engine.name

    @property
    def prompt_version(self) -> str:
        versions = [self.drafter.prompt.template.version]
        if self.verifier is not None:
            versions.append(self.verifier.template.version)
        return "+".join([*versions, self.resolver.template.version])

    def ask(self, question: Question, on_passages: PassagesCallback | None = None,
            on_delta: DeltaCallback | None = None, guard: Guard | None = None) -> Answer:
        """Answer ``question`` from the indexed documents, with checked citations or a refusal.

        A follow-up (``question.history``) is rewritten to stand alone first. ``guard``
        (default: the request timeout from now) is checked before every llama.cpp call, so a
        cancelled or overdue request stops within one step."""
        guard = guard or Guard(timeout_s=self.timeout_s)
        policy = self.policy.with_min_confidence(question.min_confidence)
        started = time.perf_counter()
        asked = self.resolver.standalone(question.text, question.history, guard)
        rewritten = time.perf_counter()
        query = self.retriever.embed(asked)
        passages, dropped = self.passages(asked, question.top_k, query)
        retrieved = time.perf_counter()
        if on_passages:
            on_passages(passages)
        trace = Trace(asked, max((p.similarity for p in passages), default=0.0),
                      [p.chunk.chunk_id for p in dropped], round(rewritten - started, 4))
        verdict, citations = policy.decide(trace, "retrieved"), list[Citation]()
        if not verdict.refused:
            trace, verdict, citations = self._draft_and_decide(trace, passages, query, policy,
                                                               on_delta, guard)
        done = time.perf_counter()
        return Answer(
            question=question.text,
            standalone_question=asked if asked != question.text else None,
            answer=REFUSAL_ANSWER if verdict.refused else chosen_text(trace, verdict),
            refused=verdict.refused,
            citations=[] if verdict.refused else citations,
            passages=passages,
            model=self.model_name,
            prompt=self.prompt_version,
            confidence=None if verdict.refused else verdict.confidence,
            refusal_reason=verdict.reason,
            trace=trace,
            timings=Timings(retrieve_s=retrieved - started, generate_s=done - retrieved,
                            total_s=done - started),
        )

    def passages(self, question: str, top_k: int,
                 query: Vectors | None = None) -> tuple[list[Passage], list[Passage]]:
        """The best passages that fit the context beside everything else this question needs
        (``query``: the question's embedding, if made already)."""
        others = [self.resolver.claim()]
        if self.verifier is not None:
            others.append(self.verifier.claim(question))
        return passages_that_fit(self.drafter.engine.n_ctx,
                                 self.retriever.search(question, top_k, query),
                                 lambda shown: self.drafter.claim(question, shown), others)

    def _draft_and_decide(self, trace: Trace, passages: list[Passage], query: Vectors,
                          policy: Policy,
                          on_delta: DeltaCallback | None,
                          guard: Guard) -> tuple[Trace, Verdict, list[Citation]]:
        """Draft, check every candidate answer's citations, measure what the decision needs of
        them, decide; the chosen answer's citations."""
        draft = self.drafter.generate(trace.question, passages, on_delta, guard)
        table = self.checker.table(trace.question, passages, query)
        cited = cited_positions(passages, draft.cited)
        supports = [self.checker.support(table, c.text, cited) for c in draft.candidates]
        trace = drafted(trace, draft, supports)
        verdict = policy.decide(trace, "drafted")
        if trace.draft and (self.explain or not verdict.refused):
            trace = self._measure(trace, supports, policy, guard)
        if not verdict.refused:
            verdict = policy.decide(trace, "measured")
        chosen = supports[verdict.chosen].citations if verdict.chosen is not None else []
        return trace, verdict, chosen

    def _measure(self, trace: Trace, supports: list[SupportReport], policy: Policy,
                 guard: Guard) -> Trace:
        """The verifier's P(yes) for each candidate the decision may choose (every supported
        one when explaining), the evidence of all of them read once."""
        wanted = {VERIFICATION, QUESTION_PMI} if self.explain else policy.measures
        if self.verifier is None or not wanted:
            return trace
        measured = [i for i, c in enumerate(trace.candidates)
                    if (c.support_citations if self.explain else
                        policy.ruled_out(trace, c) is None)]
        if not measured:
            return trace
        evidence = " ".join(dict.fromkeys(
            citation.quote for i in measured for citation in supports[i].citations))
        p_yes, pmi = self.verifier.verify_each(
            trace.question, [trace.candidates[i].text for i in measured], evidence,
            pmi=QUESTION_PMI in wanted, guard=guard)
        candidates = list(trace.candidates)
        for i, p in zip(measured, p_yes, strict=True):
            candidates[i] = replace(candidates[i], verification=round(p, 4))
        return replace(trace, candidates=candidates, question_pmi=pmi)


def drafted(trace: Trace, draft: Draft, supports: list[SupportReport]) -> Trace:
    """``trace`` with the draft, its candidates and what their citation checks showed."""
    return replace(
        trace,
        draft=draft.answer,
        found_probability=round(draft.found_probability, 4),
        answer_logprob=None if draft.answer_logprob is None else round(draft.answer_logprob, 4),
        cited=[chunk.chunk_id for chunk in draft.cited],
        candidates=[CandidateTrace(
            # A computed answer names the unit the question asks for.
            text=with_unit(trace.question, c.text) if support.computed else c.text,
            origin=c.origin, logprob=round(c.logprob, 4), tokens=c.tokens,
            evidence=support.evidence_text, best_support=round(support.best_support, 4),
            support_citations=[(q.source, q.start, q.end) for q in support.citations],
            echoes_question=support.echoes_question, computed=support.computed,
        ) for c, support in zip(draft.candidates, supports, strict=True)],
        prompt_tokens=draft.prompt_tokens,
        answer_tokens=draft.answer_tokens,
        completion_tokens=draft.completion_tokens,
        decode_calls=draft.decode_calls,
        decode_steps=draft.decode_steps,
    )


def chosen_text(trace: Trace, verdict: Verdict) -> str:
    """The text of the candidate ``verdict`` chose."""
    return trace.candidates[verdict.chosen].text if verdict.chosen is not None else ""


def cited_positions(passages: list[Passage], cited: list[Chunk]) -> list[int]:
    """The model's citations as 1-based positions among the retrieved passages."""
    position = {p.chunk.chunk_id: n for n, p in enumerate(passages, start=1)}
    return [position[chunk.chunk_id] for chunk in cited if chunk.chunk_id in position]
