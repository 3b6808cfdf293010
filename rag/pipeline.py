"""The question pipeline: retrieve -> generate -> check citations -> decide -> Answer.

``Pipeline.ask`` is the one function the CLI, the HTTP service and the eval harness call. A
Pipeline holds the loaded index and models; build it once per process with ``Pipeline.load``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag import calibration, kv_state, selftest
from rag.citations import CitationChecker
from rag.conversation import Rewriter, Turn
from rag.decoding import Engine, KvSequence
from rag.errors import InputError, SettingsError
from rag.generation import (
    AnswerPrompt,
    CorpusPrompt,
    DeltaCallback,
    Draft,
    Generator,
    RetrievalPrompt,
)
from rag.guard import Guard
from rag.index_store import StoredIndex, load_index
from rag.model_loading import Embedder, load_generator, model_identity, resolve_model_path
from rag.prompts import load_template
from rag.refusal import (
    DEFAULT_MIN_CONFIDENCE,
    MIN_CONFIDENCE,
    REFUSAL_ANSWER,
    Case,
    Policy,
    Verdict,
    decide,
    verdicts,
)
from rag.retrieval import Retriever
from rag.settings import Settings
from rag.types import Answer, Citation, Passage, Timings
from rag.verification import Verifier

PassagesCallback = Callable[[list[Passage]], None]
MAX_TOP_K = 20
log = logging.getLogger("rag.pipeline")


def refusal_policy(settings: Settings) -> Policy:
    """The thresholds in force: the settings', else those chosen for the generator; and the
    calibrated model when asked for (it must have been fitted for this generator)."""
    name = resolve_model_path(settings)[1]
    confidence = settings.min_confidence
    if confidence is None:
        confidence = MIN_CONFIDENCE.get(name, DEFAULT_MIN_CONFIDENCE)
    model = None
    if settings.refusal_model == "calibrated":
        model = calibration.load()
        if model is None or model.generator != name:
            raise SettingsError(
                f"RAG_REFUSAL_MODEL=calibrated needs {calibration.MODEL_FILE} fitted for {name}"
                " (make calibrate); use RAG_REFUSAL_MODEL=rules"
            )
    return Policy(min_relevance=settings.min_relevance, min_confidence=confidence,
                  calibration=model)


@dataclass
class Pipeline:
    settings: Settings
    retriever: Retriever
    generator: Generator
    checker: CitationChecker
    verifier: Verifier | None
    rewriter: Rewriter
    policy: Policy

    @classmethod
    def load(cls, settings: Settings, embedder: Embedder | None = None) -> Pipeline:
        embedder = embedder or Embedder(settings.threads)
        index = load_index(settings.index_dir, embedder.name)
        policy = refusal_policy(settings)
        engine = load_generator(settings)
        verifier = None
        if policy.min_confidence or policy.calibration is not None:
            verifier = Verifier(engine, load_template(settings.verify_prompt, settings.prompts_dir))
        return cls(
            settings=settings,
            retriever=Retriever(index, embedder, settings),
            generator=Generator(engine, choose_prompt(settings, engine, index),
                                settings.max_answer_tokens, settings.extractive_answers),
            checker=CitationChecker(embedder, settings.min_support, index.documents),
            verifier=verifier,
            rewriter=Rewriter(engine, load_template(settings.rewrite_prompt, settings.prompts_dir),
                              settings.max_history_turns),
            policy=policy,
        )

    def with_index(self, index_dir: Path) -> Pipeline:
        """The same models over the index now at ``index_dir`` (a reload: nothing is loaded
        twice; the prompt prefix is brought in by ``warm_up``)."""
        index = load_index(index_dir, self.retriever.embedder.name)
        return replace(
            self,
            retriever=Retriever(index, self.retriever.embedder, self.settings),
            generator=Generator(self.engine, choose_prompt(self.settings, self.engine, index),
                                self.settings.max_answer_tokens,
                                self.settings.extractive_answers),
            checker=CitationChecker(self.retriever.embedder, self.settings.min_support,
                                    index.documents),
        )

    @property
    def index(self) -> StoredIndex:
        return self.retriever.index

    @property
    def engine(self) -> Engine:
        return self.generator.engine

    @property
    def model_name(self) -> str:
        return self.engine.name

    @property
    def prompt_version(self) -> str:
        versions = [self.generator.template.version]
        if self.verifier is not None:
            versions.append(self.verifier.template.version)
        return "+".join([*versions, self.rewriter.template.version])

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        on_passages: PassagesCallback | None = None,
        on_delta: DeltaCallback | None = None,
        guard: Guard | None = None,
        history: list[Turn] | None = None,
    ) -> Answer:
        """Answer ``question`` from the indexed documents, with checked citations or a refusal.

        ``history``: earlier turns of a conversation; a follow-up that points back into them
        is rewritten to stand alone first (``rag.conversation``). ``guard`` (default: the
        request timeout from now) is checked before every llama.cpp call: a cancelled or
        overdue request stops within one step."""
        asked = self.validate_question(question)
        top_k = self.validate_top_k(top_k)
        guard = guard or Guard(timeout_s=self.settings.request_timeout_s)
        started = time.perf_counter()
        question = self.rewriter.standalone(asked, history or [], guard)
        rewritten = time.perf_counter()
        passages = self.retriever.search(question, top_k)
        passages, dropped = self.generator.fit(question, passages, self._reserve(question))
        retrieved = time.perf_counter()
        if on_passages:
            on_passages(passages)
        case = Case(question, passages)
        verdict = decide(case, self.policy, "retrieved")
        trace: dict[str, Any] = {}
        if not verdict.refused:
            case, verdict = self._judge_a_draft(case, on_delta, guard)
            trace = self._trace(case, dropped, rewritten - started)
        answer, citations = REFUSAL_ANSWER, list[Citation]()
        if not verdict.refused and case.draft is not None and case.support is not None:
            answer, citations = case.draft.answer, case.support.citations
        generated = time.perf_counter()
        return Answer(
            question=asked,
            standalone_question=question if question != asked else None,
            answer=answer,
            refused=verdict.refused,
            citations=citations,
            passages=passages,
            model=self.model_name,
            prompt=self.prompt_version,
            refusal_reason=verdict.reason,
            trace=trace,
            timings=Timings(
                retrieve_s=retrieved - started,
                generate_s=generated - retrieved,
                total_s=generated - started,
            ),
        )

    def _judge_a_draft(self, case: Case, on_delta: DeltaCallback | None,
                       guard: Guard) -> tuple[Case, Verdict]:
        """Draft an answer, check its citations, verify it (unless refused already): the case
        as then known, and the verdict."""
        draft = self.generator.generate(case.question, case.passages, on_delta, guard)
        support = self.checker.check(case.question, draft.answer,
                                     cited_positions(case.passages, draft), case.passages,
                                     self.generator.prompt.shown(case.passages))
        case = replace(case, draft=draft, support=support)
        verdict = decide(case, self.policy, "drafted")
        wanted = not verdict.refused or self.settings.explain_refusals
        if self.verifier is not None and draft.answer and wanted:
            case = replace(case, verification=self.verifier.probability(
                case.question, draft.answer, support.evidence_text, guard))
        if not verdict.refused:
            verdict = decide(case, self.policy, "verified")
        return case, verdict

    def _trace(self, case: Case, dropped: list[Passage], rewrite_s: float) -> dict[str, Any]:
        """What the eval reports and logs show of a drafted answer beyond the Answer JSON."""
        draft, support = case.draft, case.support
        assert draft is not None and support is not None
        trace = {
            "draft": draft.answer,
            "found": draft.found,
            "cited": [chunk.chunk_id for chunk in draft.cited],
            "evidence": support.evidence_text,
            "prompt_tokens": draft.prompt_tokens,
            "completion_tokens": draft.completion_tokens,
            "answer_tokens": draft.answer_tokens,
            "decode_calls": draft.decode_calls,
            "decode_steps": draft.decode_steps,
            "found_probability": round(draft.found_probability, 4),
            "best_support": round(support.best_support, 4),
            "best_similarity": round(max((p.similarity for p in case.passages), default=0.0), 4),
            "passages_dropped": [p.chunk.chunk_id for p in dropped],
            "rewrite_s": round(rewrite_s, 4),
        }
        if case.verification is not None:
            trace["verification"] = round(case.verification, 4)
        if self.settings.explain_refusals:
            trace["signals"] = verdicts(case, self.policy)
            # What the answer would cite, refused or not: refusal rules replay on reports.
            trace["support_citations"] = [[c.source, c.start, c.end] for c in support.citations]
        return trace

    def _reserve(self, question: str) -> int:
        """Context kept free for the verification of an answer to ``question``."""
        rewriter = len(self.rewriter.prefix)  # kept in the cache between rewrites
        if self.verifier is None:
            return rewriter
        return rewriter + self.verifier.reserve(question, self.settings.max_answer_tokens)

    def warm_up(self) -> None:
        """Bring the fixed prompt prefixes into the KV cache (from their saved states when
        they match, else by reading them and saving the states), so the first real question
        is as fast as the next ones."""
        key = {"index_fingerprint": self.index.manifest.fingerprint,
               "model": model_identity(self.settings), "build": selftest.build_id()}
        parts: list[tuple[str, KvSequence, list[int], str]] = [
            (f"answer-{self.generator.prompt.mode}", self.generator.seq,
             self.generator.prompt.fixed_prefix(), self.generator.template.version)]
        if self.verifier is not None:
            parts.append(("verify", self.verifier.seq, self.verifier.prefix,
                          self.verifier.template.version))
        parts.append(("rewrite", self.rewriter.seq, self.rewriter.prefix,
                      self.rewriter.template.version))
        for name, seq, tokens, template in parts:
            outcome = kv_state.prepare(self.engine, seq, tokens, self.index.path / kv_state.FOLDER,
                                       name, kv_state.prefix_key(tokens, template=template, **key))
            log.info(json.dumps({"event": "prefix", "name": name, "tokens": len(tokens),
                                 "state": outcome}))
        # One step past the prefix pages every weight in; a loaded state touches none of them.
        self.engine.extend(self.generator.seq, parts[0][2][-1:])
        self.engine.truncate(self.generator.seq, len(parts[0][2]))

    def validate_question(self, question: str) -> str:
        question = question.strip()
        if not question:
            raise InputError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise InputError(
                f"the question is {len(question)} characters long; the limit is "
                f"{self.settings.max_question_chars} (setting RAG_MAX_QUESTION_CHARS)"
            )
        return question

    def validate_top_k(self, top_k: int | None) -> int:
        if top_k is None:
            return self.settings.top_k
        if not 1 <= top_k <= MAX_TOP_K:
            raise InputError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
        return top_k


def choose_prompt(settings: Settings, engine: Engine, index: StoredIndex) -> AnswerPrompt:
    """The corpus layout when asked for (or, in auto mode, when the whole corpus fits
    ``corpus_max_tokens``), else the retrieval layout; both with the same template."""
    template = load_template(settings.prompt, settings.prompts_dir)
    if settings.prompt_mode == "retrieval":
        return RetrievalPrompt(engine, template)
    chars = sum(d.chars for d in index.manifest.documents)
    # No token is longer than 16 characters here: a cheap bound before tokenizing it all.
    if settings.prompt_mode == "auto" and chars > 16 * settings.corpus_max_tokens:
        return RetrievalPrompt(engine, template)
    corpus = CorpusPrompt(engine, template, index.chunks)
    size = len(engine.tokenize(corpus.corpus))
    if size <= settings.corpus_max_tokens:
        return corpus
    if settings.prompt_mode == "corpus":
        raise SettingsError(
            f"the corpus is {size} tokens, above corpus_max_tokens ({settings.corpus_max_tokens})"
            ": raise RAG_CORPUS_MAX_TOKENS (and RAG_N_CTX) or use RAG_PROMPT_MODE=retrieval"
        )
    return RetrievalPrompt(engine, template)


def cited_positions(passages: list[Passage], draft: Draft) -> list[int]:
    """The model's citations as 1-based positions among the retrieved passages."""
    position = {p.chunk.chunk_id: n for n, p in enumerate(passages, start=1)}
    return [position[chunk.chunk_id] for chunk in draft.cited if chunk.chunk_id in position]
