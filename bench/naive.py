"""The naive reference pipeline the benchmarks compare against.

What a typical tutorial RAG does: one chunk per paragraph, dense top-4, one chat completion with a
JSON schema, no citation checking, no refusal logic. It shares the embedder and the llama.cpp
model file, thread counts and context size with the real pipeline, so only the pipeline design
differs; it drives llama.cpp through llama-cpp-python's own chat API, as such tutorials do.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import faiss

from rag.llm.loading import choose_model
from rag.retrieval.embedder import Embedder
from rag.settings import Settings

SYSTEM = (
    "You are a helpful assistant. Answer the user's question using the context below. "
    "Respond in JSON with the keys \"answer\" (your answer) and \"sources\" (the numbers of the "
    "context passages you used)."
)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "sources": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["answer", "sources"],
}
TOP_K = 4
SEED = 0  # the naive reference samples greedily; the seed only fixes llama.cpp's state


@dataclass(frozen=True)
class NaiveAnswer:
    text: str
    seconds: float


class NaivePipeline:
    def __init__(self, text: str, embedder: Embedder, settings: Settings) -> None:
        from llama_cpp import Llama

        self.paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        self.embedder = embedder
        self.llm = Llama(model_path=str(choose_model(settings).path), n_ctx=settings.n_ctx,
                         n_batch=settings.n_batch, n_threads=settings.threads,
                         n_threads_batch=settings.batch_threads, seed=SEED, verbose=False)
        vectors = embedder.encode(self.paragraphs)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def ask(self, question: str) -> NaiveAnswer:
        started = time.perf_counter()
        _, rows = self.index.search(self.embedder.encode([question]), TOP_K)
        context = "\n\n".join(
            f"[{n}] {self.paragraphs[row]}" for n, row in enumerate(rows[0].tolist(), 1)
        )
        result: Any = self.llm.create_chat_completion(
            messages=[
                {"role": "system", "content": f"{SYSTEM}\n\nContext:\n{context}"},
                {"role": "user", "content": question},
            ],
            temperature=0.0,
            max_tokens=256,
            response_format={"type": "json_object", "schema": SCHEMA},
        )
        text = result["choices"][0]["message"]["content"]
        return NaiveAnswer(text, time.perf_counter() - started)
