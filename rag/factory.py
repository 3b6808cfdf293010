"""Building a pipeline: load the index and the models once, swap in a new index, warm the caches.

The engine holds one KV sequence per component that reads with it (``SEQUENCES``); each
component is handed its own. For requests answered at once (``slots``), every slot has its own
three sequences and its own ``Pipeline`` over the same engine, index and embedder
(``for_slots``); the fixed prefixes are read once and shared into every slot's sequences. A
reload keeps every model and builds only what depends on the index; ``warm_up`` brings the fixed
prompt prefixes into the KV cache (from their saved states when they match, else by reading them
and saving the states) so the first real question is as fast as the next ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import TypeVar

from rag.answer.citations import CitationChecker
from rag.answer.drafting import BRANCHES, MAX_CANDIDATES, Drafter
from rag.answer.followup import Resolver
from rag.answer.layouts import choose_layout
from rag.answer.prompts import load_template
from rag.answer.verification import Verifier
from rag.decision.policy import Policy
from rag.decision.scorers import choice_for
from rag.llm import kv_state, selftest
from rag.llm.engine import Engine, KvSequence, ModelChoice, SequenceReader
from rag.llm.loading import choose_model, load_engine
from rag.pipeline import Pipeline
from rag.retrieval.embedder import Embedder
from rag.retrieval.search import Retriever
from rag.retrieval.store import KV_STATES, StoredIndex, load_index
from rag.settings import Settings

# Each slot's sequences: the answer, its verification, the follow-up rewrite, the answer's
# branches and one per candidate answer the verifier reads side by side.
BRANCH_SEQUENCES = tuple(f"branch{n}" for n in range(1, BRANCHES + 1))
CHECK_SEQUENCES = tuple(f"check{n}" for n in range(1, MAX_CANDIDATES + 1))
SEQUENCES = ("answer", "verify", "followup", *BRANCH_SEQUENCES, *CHECK_SEQUENCES)
ReaderT = TypeVar("ReaderT", bound=SequenceReader)
log = logging.getLogger("rag.pipeline")


def load_pipeline(settings: Settings, embedder: Embedder | None = None,
                  explain: bool = False, slots: int = 1) -> Pipeline:
    """The index at ``settings.index_dir`` and the configured models, ready to answer; with
    ``explain`` every draft is measured in full (the eval harness replays other policies).
    ``slots`` above one makes room for that many requests at once (``for_slots``)."""
    # The index and the model file are checked before the embedder loads (seconds of imports),
    # so a missing or mismatched one is reported at once.
    index = load_index(settings.index_dir, Embedder.name)
    model = choose_model(settings)
    policy = _policy(settings, model)
    embedder = embedder or Embedder(settings.threads)
    engine = load_engine(settings, model, _sequence_names(slots), slots)
    verifier = None
    if policy.measures or explain:
        verifier = Verifier(engine, engine.sequence("verify"),
                            load_template(settings.verify_prompt, settings.prompts_dir),
                            settings.max_answer_tokens, _sequences(engine, CHECK_SEQUENCES))
    resolver = Resolver(engine, engine.sequence("followup"),
                        load_template(settings.followup_prompt, settings.prompts_dir),
                        settings.max_history_turns)
    return Pipeline(
        retriever=Retriever(index, embedder, settings),
        resolver=resolver,
        drafter=_drafter(settings, engine, index),
        checker=_checker(embedder, settings, index),
        verifier=verifier,
        policy=policy,
        timeout_s=settings.request_timeout_s,
        explain=explain,
    )


def with_index(pipeline: Pipeline, settings: Settings) -> Pipeline:
    """The same models over the index now at ``settings.index_dir`` (a reload: nothing is loaded
    twice; ``warm_up`` brings in the new prompt prefix)."""
    embedder = pipeline.retriever.embedder
    index = load_index(settings.index_dir, embedder.name)
    return replace(
        pipeline,
        retriever=Retriever(index, embedder, settings),
        drafter=_drafter(settings, pipeline.drafter.engine, index),
        checker=_checker(embedder, settings, index),
    )


def for_slots(pipeline: Pipeline, slots: int, share: bool = True) -> list[Pipeline]:
    """``pipeline`` and a copy on each further slot's own sequences (all warmed up: the prefixes
    read by ``warm_up`` into the first are shared into the others, not read again). Without
    ``share`` the slots' sequences are left as they are: they already hold these prefixes and may
    be answering a question right now."""
    return [pipeline, *(_on_slot(pipeline, slot, share) for slot in range(1, slots))]


def _on_slot(pipeline: Pipeline, slot: int, share: bool) -> Pipeline:
    engine = pipeline.drafter.engine

    def moved(reader: ReaderT) -> ReaderT:
        seq = engine.sequence(f"{reader.seq.name}.{slot}")
        if share:
            engine.share(reader.seq, seq, len(reader.seq.tokens))
        return replace(reader, seq=seq)

    drafter = replace(moved(pipeline.drafter),
                      branch_seqs=_sequences(engine, BRANCH_SEQUENCES, slot))
    verifier = pipeline.verifier
    if verifier is not None:
        verifier = replace(moved(verifier), check_seqs=_sequences(engine, CHECK_SEQUENCES, slot))
    return replace(pipeline, drafter=drafter, resolver=moved(pipeline.resolver),
                   verifier=verifier)


def _sequence_names(slots: int) -> tuple[str, ...]:
    return SEQUENCES + tuple(f"{name}.{slot}" for slot in range(1, slots) for name in SEQUENCES)


def _sequences(engine: Engine, names: tuple[str, ...], slot: int = 0) -> tuple[KvSequence, ...]:
    """The engine's sequences of ``names`` for ``slot`` (0: the first slot's, unsuffixed)."""
    return tuple(engine.sequence(f"{name}.{slot}" if slot else name) for name in names)


def fixed_prefixes(pipeline: Pipeline) -> list[tuple[str, KvSequence, list[int], str]]:
    """Each reader's name, sequence, fixed prompt prefix and template version."""
    return [(reader.name, reader.seq, reader.prefix, reader.template.version)
            for reader in pipeline.readers]


def same_prefixes(served: Pipeline, fresh: Pipeline) -> bool:
    """Whether ``fresh`` reads with the same sequences and prefixes as ``served`` (an index
    change the prompts do not show: the passages come with each question), so the KV cache
    already holds everything ``fresh`` starts from."""
    def plan(pipeline: Pipeline) -> list[tuple[str, str, list[int], str]]:
        return [(name, seq.name, tokens, template)
                for name, seq, tokens, template in fixed_prefixes(pipeline)]

    return plan(served) == plan(fresh)


def warm_up(pipeline: Pipeline) -> None:
    """Every fixed prompt prefix in its KV sequence, from a saved state when one matches."""
    engine = pipeline.drafter.engine
    key = {"index_fingerprint": pipeline.index.manifest.fingerprint,
           "model": engine.model.identity, "build": selftest.build_id()}
    parts = fixed_prefixes(pipeline)
    folder = pipeline.index.path / KV_STATES
    for name, seq, tokens, template in parts:
        outcome = kv_state.prepare(engine, seq, tokens, folder, name,
                                   kv_state.prefix_key(tokens, template=template, **key))
        log.info(json.dumps({"event": "prefix", "name": name, "tokens": len(tokens),
                             "state": outcome}))
    # One step past the prefix pages every weight in; a loaded state touches none of them.
    first = parts[0][2]
    engine.extend(pipeline.drafter.seq, first[-1:])
    engine.truncate(pipeline.drafter.seq, len(first))


def _policy(settings: Settings, model: ModelChoice) -> Policy:
    """The generator's scorer, at the configured operating point or the one chosen for it."""
    return choice_for(model.name).policy(settings.min_relevance, settings.min_confidence)


def _drafter(settings: Settings, engine: Engine, index: StoredIndex) -> Drafter:
    return Drafter(engine, engine.sequence("answer"), choose_layout(settings, engine, index),
                   settings.max_answer_tokens, _sequences(engine, BRANCH_SEQUENCES),
                   settings.lookahead_tokens)


def _checker(embedder: Embedder, settings: Settings, index: StoredIndex) -> CitationChecker:
    """The citation checker over ``index``'s documents and stored span embeddings."""
    return CitationChecker(embedder, settings.min_support, index.documents, index.spans)
