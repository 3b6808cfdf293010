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

from rag import kv_state, selftest
from rag.citations import CitationChecker
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
from rag.model_files import KNOWN_MODELS
from rag.model_loading import Embedder, load_generator, model_identity
from rag.prompts import load_template
from rag.refusal import REFUSAL_ANSWER, confirm, judge, out_of_scope
from rag.retrieval import Retriever
from rag.settings import Settings
from rag.types import Answer, Passage, Timings
from rag.verification import Verifier

PassagesCallback = Callable[[list[Passage]], None]
MAX_TOP_K = 20
log = logging.getLogger("rag.pipeline")


def confidence_threshold(settings: Settings) -> float:
    """The configured confidence threshold, else the one chosen for the model."""
    if settings.min_confidence is not None:
        return settings.min_confidence
    return KNOWN_MODELS["default" if settings.model_path else settings.llm].min_confidence


@dataclass
class Pipeline:
    settings: Settings
    retriever: Retriever
    generator: Generator
    checker: CitationChecker
    verifier: Verifier | None

    @classmethod
    def load(cls, settings: Settings, embedder: Embedder | None = None) -> Pipeline:
        embedder = embedder or Embedder(settings.threads)
        index = load_index(settings.index_dir, embedder.name)
        settings = settings.replace(min_confidence=confidence_threshold(settings))
        engine = load_generator(settings)
        verifier = None
        if settings.min_confidence:
            verifier = Verifier(engine, load_template(settings.verify_prompt, settings.prompts_dir))
        return cls(
            settings=settings,
            retriever=Retriever(index, embedder, settings),
            generator=Generator(engine, choose_prompt(settings, engine, index),
                                settings.max_answer_tokens),
            checker=CitationChecker(embedder, settings.min_support, index.documents),
            verifier=verifier,
        )

    def with_index(self, index_dir: Path) -> Pipeline:
        """The same models over the index now at ``index_dir`` (a reload: nothing is loaded
        twice; the prompt prefix is brought in by ``warm_up``)."""
        index = load_index(index_dir, self.retriever.embedder.name)
        return replace(
            self,
            retriever=Retriever(index, self.retriever.embedder, self.settings),
            generator=Generator(self.engine, choose_prompt(self.settings, self.engine, index),
                                self.settings.max_answer_tokens),
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
        return "+".join(versions)

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        on_passages: PassagesCallback | None = None,
        on_delta: DeltaCallback | None = None,
        guard: Guard | None = None,
    ) -> Answer:
        """Answer ``question`` from the indexed documents, with checked citations or a refusal.

        ``guard`` (default: the request timeout from now) is checked before every llama.cpp
        call: a cancelled or overdue request stops within one step."""
        question = self.validate_question(question)
        top_k = self.validate_top_k(top_k)
        guard = guard or Guard(timeout_s=self.settings.request_timeout_s)
        started = time.perf_counter()
        passages = self.retriever.search(question, top_k)
        passages, dropped = self.generator.fit(question, passages, self._reserve(question))
        retrieved = time.perf_counter()
        if on_passages:
            on_passages(passages)
        answer, citations = REFUSAL_ANSWER, []
        trace: dict[str, Any] = {}
        verdict = out_of_scope(passages, self.settings.min_relevance)
        if verdict is None:
            draft = self.generator.generate(question, passages, on_delta, guard)
            support = self.checker.check(question, draft.answer, cited_positions(passages, draft),
                                         passages, self.generator.prompt.shown(passages))
            trace = _trace(draft, support.evidence_text)
            trace["passages_dropped"] = [p.chunk.chunk_id for p in dropped]
            verdict = judge(question, draft, support)
            if not verdict.refused and self.verifier is not None:
                probability = self.verifier.probability(
                    question, draft.answer, support.evidence_text, guard
                )
                trace["verification"] = round(probability, 4)
                verdict = confirm(
                    draft.found_probability, probability, self.settings.min_confidence or 0.0
                )
            if not verdict.refused:
                answer, citations = draft.answer, support.citations
        generated = time.perf_counter()
        return Answer(
            question=question,
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

    def _reserve(self, question: str) -> int:
        """Context kept free for the verification of an answer to ``question``."""
        if self.verifier is None:
            return 0
        return self.verifier.reserve(question, self.settings.max_answer_tokens)

    def warm_up(self) -> None:
        """Bring both fixed prompt prefixes into the KV cache (from their saved states when
        they match, else by reading them and saving the states), so the first real question
        is as fast as the next ones."""
        key = {"index_fingerprint": self.index.manifest.fingerprint,
               "model": model_identity(self.settings), "build": selftest.build_id()}
        parts: list[tuple[str, KvSequence, list[int], str]] = [
            (f"answer-{self.generator.prompt.mode}", self.generator.seq,
             self.generator.prompt.fixed_prefix(), self.generator.template.version)]
        if self.verifier is not None:
            parts.append(("verify", self.verifier.seq, self.verifier.fixed_prefix(),
                          self.verifier.template.version))
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


def _trace(draft: Draft, evidence: str) -> dict[str, Any]:
    return {
        "draft": draft.answer,
        "found": draft.found,
        "cited": [chunk.chunk_id for chunk in draft.cited],
        "evidence": evidence,
        "prompt_tokens": draft.prompt_tokens,
        "completion_tokens": draft.completion_tokens,
        "answer_tokens": draft.answer_tokens,
        "decode_calls": draft.decode_calls,
        "decode_steps": draft.decode_steps,
        "found_probability": round(draft.found_probability, 4),
    }
