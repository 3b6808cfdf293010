"""Retrieval recall by document, for every retrieval lever at once (no generator needed).

For each chunking (size, overlap) every document is indexed alone, and every answerable gold
question is searched with each candidate depth and fusion weighting; a question is found at k
when one of the first k passages holds one of its evidence spans. Levers are compared at a fixed
prompt budget too: k passages of a chunk size cost about k x size tokens of prompt.

Leave-one-document-out: for each document, the setting with the best mean recall over the *other*
documents is chosen, then scored on the one left out, beside the current default.

    python -m eval.retrieval --squad ../shared/benchmarks/squad2-dev-2articles --json r.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eval.gold import GoldItem, load_gold
from eval.metrics import Located, locate
from index_build.build import build_index
from rag.retrieval.embedder import Embedder
from rag.retrieval.search import Retriever, fuse
from rag.retrieval.store import load_index
from rag.settings import BUNDLED_CORPUS, PROJECT_ROOT, Settings
from rag.types import Chunk

GOLD = PROJECT_ROOT / "eval" / "gold"
CHUNKINGS = [(60, 15), (80, 20), (100, 25), (120, 30), (160, 40)]
CANDIDATES = [20, 40]
WEIGHTS = [(1.0, 1.5), (1.0, 1.0), (1.5, 1.0), (1.0, 3.0), (1.0, 0.0), (0.0, 1.0)]
KS = [2, 3, 4, 5, 6, 8]
BUDGET_TOKENS = 320  # the default's prompt: 4 passages of at most 80 tokens


@dataclass(frozen=True)
class Setting:
    chunk_tokens: int
    chunk_overlap: int
    candidates: int
    dense_weight: float
    lexical_weight: float
    top_k: int

    @property
    def tokens(self) -> int:
        return self.chunk_tokens * self.top_k


DEFAULT = Setting(80, 20, 20, 1.0, 1.5, 4)


def documents(squad: Path | None) -> dict[str, tuple[Path, list[GoldItem]]]:
    """Each tuning document and its answerable questions (the sealed test split is left out)."""
    article = [i for name in ("article.jsonl", "article_tune2.jsonl")
               for i in load_gold(GOLD / name) if i.answerable]
    docs = {"article": (BUNDLED_CORPUS, article)}
    if squad is not None:
        for item in load_gold(squad / "gold.jsonl"):
            if item.answerable and item.doc:
                docs.setdefault(item.doc, (squad / "docs" / f"{item.doc}.txt", []))[1].append(item)
    return docs


def ranks(path: Path, items: list[GoldItem], embedder: Embedder, folder: Path,
          chunking: tuple[int, int]) -> dict[tuple[int, float, float], list[int | None]]:
    """Per (candidates, dense weight, lexical weight): each question's first rank holding its
    evidence, or None beyond the deepest k. Each retriever is asked once per question, to the
    deepest candidate depth; every fusion is computed from those lists."""
    settings = Settings(index_dir=folder / "index", chunk_tokens=chunking[0],
                        chunk_overlap=chunking[1])
    build_index(settings, [path], embedder)
    index = load_index(settings.index_dir, embedder.name)
    texts = {doc_id: doc.text for doc_id, doc in index.documents.items()}
    retriever = Retriever(index, embedder, settings)
    queries = embedder.encode([item.question for item in items])
    depth = max(CANDIDATES)
    lists = [(retriever.dense_search(queries[i:i + 1], depth),
              retriever.lexical_search(item.question, depth)) for i, item in enumerate(items)]
    found = {}
    for candidates, (dense, lexical) in itertools.product(CANDIDATES, WEIGHTS):
        hits = []
        for item, (by_meaning, by_words) in zip(items, lists, strict=True):
            fused = fuse([by_meaning[:candidates], by_words[:candidates]], [dense, lexical],
                         settings.rrf_k)
            chunks = [index.chunks[row] for row, _ in fused[:max(KS)]]
            hits.append(_first_hit(chunks, locate(item.evidence, texts)))
        found[(candidates, dense, lexical)] = hits
    return found


def _first_hit(chunks: list[Chunk], evidence: list[Located]) -> int | None:
    for rank, chunk in enumerate(chunks, start=1):
        if any(e.source == chunk.source and chunk.start <= e.start and e.end <= chunk.end
               for e in evidence):
            return rank
    return None


def sweep(docs: dict[str, tuple[Path, list[GoldItem]]],
          embedder: Embedder) -> dict[Setting, dict[str, tuple[int, int]]]:
    """Every setting's (found, questions) per document."""
    table: dict[Setting, dict[str, tuple[int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="rag-retrieval-") as scratch:
        for chunking in CHUNKINGS:
            for name, (path, items) in docs.items():
                folder = Path(scratch) / f"{name}-{chunking[0]}-{chunking[1]}"
                for (candidates, dense, lexical), hits in ranks(
                        path, items, embedder, folder, chunking).items():
                    for k in KS:
                        setting = Setting(*chunking, candidates, dense, lexical, k)
                        found = sum(r is not None and r <= k for r in hits)
                        table.setdefault(setting, {})[name] = (found, len(hits))
            print(f"chunking {chunking} done", file=sys.stderr)
    return table


def left_out(table: dict[Setting, dict[str, tuple[int, int]]],
             budget: int | None) -> list[dict[str, Any]]:
    """For each document: the setting chosen on the others (within the prompt budget), and its
    recall there beside the default's."""
    names = sorted(next(iter(table.values())))
    rows = []
    for held in names:
        others = [n for n in names if n != held]
        allowed = [s for s in table if budget is None or s.tokens <= budget]
        chosen = max(allowed, key=lambda s: (_mean(table[s], others), -s.tokens))
        rows.append({
            "left_out": held, "chosen": asdict(chosen),
            "recall_chosen": table[chosen][held], "recall_default": table[DEFAULT][held],
            "others_chosen": _mean(table[chosen], others),
            "others_default": _mean(table[DEFAULT], others),
        })
    return rows


def _mean(recalls: dict[str, tuple[int, int]], names: list[str]) -> float:
    return sum(recalls[n][0] / recalls[n][1] for n in names) / len(names)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.retrieval", description=__doc__)
    parser.add_argument("--squad", type=Path, help="the SQuAD folder (gold.jsonl, docs/)")
    parser.add_argument("--json", type=Path, help="write every setting's recall here")
    args = parser.parse_args()
    embedder = Embedder(2)
    table = sweep(documents(args.squad), embedder)
    result = {
        "default": asdict(DEFAULT),
        "left_out_budget": left_out(table, BUDGET_TOKENS),
        "left_out_any": left_out(table, None),
        "settings": [{**asdict(s), "recall": r} for s, r in table.items()],
    }
    for key in ("left_out_budget", "left_out_any"):
        for row in result[key]:
            print(key, json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
