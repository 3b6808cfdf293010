"""The question pipeline: retrieve -> generate -> check citations -> decide -> Answer.

``Pipeline.ask`` is the one function the CLI, the HTTP service and the eval harness call. A
Pipeline holds the loaded index and models; build it once per process with ``Pipeline.load``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rag.citations import CitationChecker
from rag.errors import InputError
from rag.generation import DeltaCallback, Generator
from rag.index_store import StoredIndex, load_index
from rag.model_files import KNOWN_MODELS
from rag.model_loading import Embedder, load_generator
from rag.prompts import load_template
from rag.refusal import REFUSAL_ANSWER, confirm, judge, out_of_scope
from rag.retrieval import Retriever
from rag.settings import Settings
from rag.types import Answer, Passage, Timings
from rag.verification import Verifier

PassagesCallback = Callable[[list[Passage]], None]
MAX_TOP_K = 20
VERIFIER_CONTEXT = 1024


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
        template = load_template(settings.prompt, settings.prompts_dir)
        embedder = embedder or Embedder(settings.threads)
        index = load_index(settings.index_dir, embedder.name)
        settings = settings.replace(min_confidence=confidence_threshold(settings))
        verifier = None
        if settings.min_confidence:
            verifier = Verifier(
                load_generator(settings, n_ctx=VERIFIER_CONTEXT),
                load_template(settings.verify_prompt, settings.prompts_dir),
            )
        return cls(
            settings=settings,
            retriever=Retriever(index, embedder, settings),
            generator=Generator(load_generator(settings), template, settings),
            checker=CitationChecker(embedder, settings.min_support),
            verifier=verifier,
        )

    @property
    def index(self) -> StoredIndex:
        return self.retriever.index

    @property
    def model_name(self) -> str:
        return self.generator.model.name

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
    ) -> Answer:
        """Answer ``question`` from the indexed documents, with checked citations or a refusal."""
        question = self.validate_question(question)
        top_k = self.validate_top_k(top_k)
        started = time.perf_counter()
        passages = self.retriever.search(question, top_k)
        retrieved = time.perf_counter()
        if on_passages:
            on_passages(passages)
        answer, citations = REFUSAL_ANSWER, []
        trace: dict[str, Any] = {}
        verdict = out_of_scope(passages, self.settings.min_relevance)
        if verdict is None:
            draft = self.generator.generate(question, passages, on_delta)
            support = self.checker.check(question, draft.answer, draft.cited, passages)
            trace = {
                "draft": draft.answer,
                "found": draft.found,
                "cited": draft.cited,
                "evidence": support.evidence_text,
                "prompt_tokens": draft.prompt_tokens,
                "completion_tokens": draft.completion_tokens,
                "found_probability": round(draft.found_probability, 4),
            }
            verdict = judge(question, draft, support)
            if not verdict.refused and self.verifier is not None:
                probability = self.verifier.probability(
                    question, draft.answer, support.evidence_text
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

    def warm_up(self) -> None:
        """Read both prompts' fixed prefixes into the KV caches and page the weights in, so the
        first real question is as fast as the next ones."""
        self.generator.warm_up()
        if self.verifier is not None:
            self.verifier.warm_up()

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
