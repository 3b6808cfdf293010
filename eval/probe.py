"""A linear probe on the generator's last-layer hidden state (issue 28, item 5).

Does the state the model is in when it writes its answer tell a strictly right greedy draft
from a wrong one better than the fitted scorer (``rag.decision``) does, on documents left out?

    python -m eval.probe collect REPORT...   # re-draft each report's drafted questions and keep
                                             # the states where the greedy answer is the report's
    python -m eval.probe lodo REPORT...      # probe, scorer and both, each document left out

The labels and the scorer's features are the reports' own (the fit reports, eval/results/fit), so
the probe is measured on exactly the drafts the scorer is fitted on; a re-draft that differs from
its report's greedy answer (another CPU build reads a few last digits differently) is dropped
and counted. Three states per draft, each the last layer after its norm (what the output head
reads): at the ``{"found":`` verdict, at the answer's opening quote (which predicts the first
answer token) and at the first answer token.

Hyper-parameters (which state, PCA size, L2 strength) are chosen inside each fold, by leave one
document out on the other documents only, so nothing is chosen on the document scored; "both"
stacks the scorer's and the probe's scores with weights fitted on those inner out-of-fold scores.

Decided before the first run (2026-12-06): the probe is kept only if "both" beats the scorer on
the pooled left-out drafts by at least 0.02 of ROC area *and* 3 more right drafts among the 65%
scored highest; otherwise the finding is recorded in docs/evaluation.md and the code removed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from eval.decisions import Row, read_report
from eval.fit import CHOSEN, Document, baseline_policy, choices, documents, fit
from eval.runner import commit, docs_named, open_pipeline
from rag.answer.drafting import ANSWER_OPENING, FOUND_KEY
from rag.llm.engine import Engine, KvSequence
from rag.settings import PROJECT_ROOT, Settings

Array = npt.NDArray[np.float64]
STATES_DIR = PROJECT_ROOT / "reports" / "probe"
RESULT = PROJECT_ROOT / "eval" / "results" / "probe.json"
POSITIONS = ("verdict", "opening", "first_token")
GRID = [(32, c) for c in (0.01, 0.1)]  # (PCA size, L2 strength); with POSITIONS: 6 per fold
COVERAGE = 0.65  # precision of the drafts scored highest, at this share of them answered


# ---- collecting ---------------------------------------------------------------------------------


def hidden_states(engine: Engine, seq: KvSequence, start: int, count: int) -> Array:
    """The last-layer states of ``seq``'s tokens ``start``..``start + count - 1``, re-read with
    llama.cpp's embeddings output on (their KV cells come out the same)."""
    tokens = seq.tokens[start:start + count]
    lib, ctx = engine._lib, engine._ctx  # an experiment's reach into the engine
    engine.truncate(seq, start)
    lib.llama_set_embeddings(ctx, True)
    try:
        engine.extend(seq, tokens, outputs=tuple(range(count)))
        width = lib.llama_model_n_embd(engine._model.model)
        return np.array([np.ctypeslib.as_array(lib.llama_get_embeddings_ith(ctx, i),
                                               shape=(width,)).copy() for i in range(count)])
    finally:
        lib.llama_set_embeddings(ctx, False)


@contextmanager
def capturing(engine: Engine, found: list[Array]) -> Iterator[None]:
    """While open, each draft's three states are appended to ``found`` just before the drafter
    drops its reply from the cache (an empty array when no answer token was read)."""
    marker = engine.tokenize(FOUND_KEY) + engine.tokenize(ANSWER_OPENING)
    plain = engine.beyond

    @contextmanager
    def beyond(seq: KvSequence, keep: int) -> Iterator[None]:
        with plain(seq, keep):
            yield
            at = _last_match(seq.tokens, marker)
            first = at + len(marker)  # the first answer token's position
            if at < 0 or len(seq.tokens) <= first:
                found.append(np.zeros((0,)))
                return
            verdict = at + len(engine.tokenize(FOUND_KEY)) - 1
            states = hidden_states(engine, seq, verdict, first - verdict + 1)
            found.append(states[[0, -2, -1]])

    engine.beyond = beyond  # type: ignore[method-assign]
    try:
        yield
    finally:
        engine.beyond = plain  # type: ignore[method-assign]


def _last_match(tokens: Sequence[int], marker: list[int]) -> int:
    for at in range(len(tokens) - len(marker), -1, -1):
        if list(tokens[at:at + len(marker)]) == marker:
            return at
    return -1


def cmd_collect(paths: list[Path]) -> None:
    STATES_DIR.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    for path in paths:
        data = read_report(path)
        names = data.get("doc_filter") or None
        docs = docs_named([PROJECT_ROOT / "eval" / "docs"], names) if names else None
        rows = [r for r in documents([path])[0].rows if r.trace.drafted and r.trace.candidates]
        kept = _collect(settings, docs, rows)
        out = STATES_DIR / (path.name.removesuffix(".json.gz") + ".npz")
        np.savez_compressed(out, ids=np.array([k[0] for k in kept]),
                            states=np.array([k[1] for k in kept], dtype=np.float32))
        print(f"{path.name}: {len(kept)} of {len(rows)} drafts re-drafted alike -> {out}",
              file=sys.stderr)


def _collect(settings: Settings, docs: list[Path] | None,
             rows: list[Row]) -> list[tuple[str, Array]]:
    kept = []
    with open_pipeline(settings, docs) as pipeline:
        engine = pipeline.drafter.engine
        for row in rows:
            found: list[Array] = []
            with capturing(engine, found):
                passages, _ = pipeline.passages(row.trace.question, settings.top_k)
                draft = pipeline.drafter.generate(row.trace.question, passages)
            same = draft.candidates and draft.candidates[0].text == row.trace.candidates[0].text
            if same and found and found[0].size:
                kept.append((row.id, found[0]))
    return kept


# ---- left out -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    doc: str
    row: Row
    states: Array  # (3, width): POSITIONS

    @property
    def right(self) -> bool:
        """The greedy draft is strictly right."""
        return self.row.candidate_right(0)


def examples(paths: list[Path]) -> list[Example]:
    """The greedy drafts the decision scores (no gate rules them out) whose states were kept."""
    found, policy = [], baseline_policy()
    for path in paths:
        states = np.load(STATES_DIR / (path.name.removesuffix(".json.gz") + ".npz"))
        by_id = dict(zip(map(str, states["ids"]), states["states"], strict=True))
        doc = documents([path])[0]
        found += [Example(doc.name, row, by_id[row.id]) for row in doc.rows
                  if row.id in by_id and 0 in choices(row, CHOSEN, policy)]
    return found


Params = tuple[int, int, float]  # position, PCA size, L2 strength


def probe(train: list[Example], params: Params) -> Any:
    position, dims, c = params
    dims = min(dims, len(train) - 1)  # a fold of one small document has fewer drafts
    model = make_pipeline(StandardScaler(), PCA(n_components=dims, random_state=0),
                          LogisticRegression(C=c, max_iter=2000))
    return model.fit(np.array([e.states[position] for e in train]), [e.right for e in train])


def probe_scores(model: Any, params: Params, test: list[Example]) -> Array:
    return np.asarray(model.predict_proba(np.array([e.states[params[0]] for e in test]))[:, 1])


def scorer_scores(docs: list[Document], held: set[str], test: list[Example]) -> Array:
    """The fitted scorer's score of each greedy draft, fitted as committed (every candidate the
    gates let through) on the documents not in ``held``."""
    fitted = fit([r for d in docs if d.name not in held for r in d.rows], CHOSEN,
                 baseline_policy())
    return np.array([fitted.scores(e.row.trace, [0])[0] for e in test])


def _logit(p: Array) -> Array:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)))


def _auc(right: list[bool], scores: Array) -> float | None:
    return float(roc_auc_score(right, scores)) if 0 < sum(right) < len(right) else None


def fold(docs: list[Document], exs: list[Example], held: str) -> dict[str, Array]:
    """``held``'s drafts scored by the scorer, the probe and both together, each fitted
    without it; the probe's parameters and the stacking chosen on the other documents."""
    train = [e for e in exs if e.doc != held]
    test = [e for e in exs if e.doc == held]
    inner_docs = sorted({e.doc for e in train})
    oof: dict[Params, list[float]] = {}
    inner_scorer: list[float] = []
    ordered: list[Example] = []
    grid = [(p, d, c) for p in range(len(POSITIONS)) for d, c in GRID]
    for inner in inner_docs:
        fit_on = [e for e in train if e.doc != inner]
        scored = [e for e in train if e.doc == inner]
        ordered += scored
        inner_scorer += list(scorer_scores(docs, {held, inner}, scored))
        for params in grid:
            oof.setdefault(params, []).extend(probe_scores(probe(fit_on, params), params, scored))
    right = [e.right for e in ordered]
    best = max(grid, key=lambda p: _auc(right, np.array(oof[p])) or 0.0)
    stack = LogisticRegression(max_iter=1000).fit(
        np.column_stack([_logit(np.array(inner_scorer)), _logit(np.array(oof[best]))]), right)
    scorer = scorer_scores(docs, {held}, test)
    probed = probe_scores(probe(train, best), best, test)
    both = stack.predict_proba(np.column_stack([_logit(scorer), _logit(probed)]))[:, 1]
    print(f"{held}: {len(test)} drafts, probe {POSITIONS[best[0]]} PCA {best[1]} C {best[2]}",
          file=sys.stderr)
    return {"scorer": scorer, "probe": probed, "both": np.asarray(both),
            "params": np.array(best, dtype=object)}


def precision_at(right: list[bool], scores: Array, coverage: float) -> tuple[int, int]:
    """Right answers among the share ``coverage`` of drafts scored highest."""
    n = max(1, round(coverage * len(right)))
    top = np.argsort(-scores, kind="stable")[:n]
    return int(sum(right[i] for i in top)), n


def cmd_lodo(paths: list[Path]) -> dict[str, Any]:
    docs = documents(paths)
    exs = examples(paths)
    held_out = sorted({e.doc for e in exs})
    per_doc: dict[str, Any] = {}
    pooled: dict[str, list[float]] = {"scorer": [], "probe": [], "both": []}
    right: list[bool] = []
    for held in held_out:
        scores = fold(docs, exs, held)
        doc_right = [e.right for e in exs if e.doc == held]
        right += doc_right
        per_doc[held] = {"drafts": len(doc_right), "right": sum(doc_right),
                         "probe_params": [POSITIONS[scores["params"][0]],
                                          *scores["params"][1:].tolist()]}
        for name in pooled:
            pooled[name] += list(scores[name])
            per_doc[held][f"auc_{name}"] = _auc(doc_right, scores[name])
    result: dict[str, Any] = {"drafts": len(right), "right": sum(right),
                              "documents": len(held_out), "per_document": per_doc}
    for name, values in pooled.items():
        k, n = precision_at(right, np.array(values), COVERAGE)
        result[name] = {"auc": _auc(right, np.array(values)),
                        "mean_doc_auc": float(np.mean([d[f"auc_{name}"] for d in per_doc.values()
                                                       if d[f"auc_{name}"] is not None])),
                        f"precision_at_{COVERAGE}": f"{k} of {n}"}
    result |= {"reports": [str(p.relative_to(PROJECT_ROOT)) for p in paths],
               "commit": commit()}
    RESULT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("drafts", "right", "scorer", "probe", "both")},
                     indent=2))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.probe", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("action", choices=("collect", "lodo"))
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.reports]
    if args.action == "collect":
        cmd_collect(paths)
    else:
        cmd_lodo(paths)


if __name__ == "__main__":
    main()
