"""`python -m eval` end to end on the real small model: other documents, reports, the gate."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval.decisions import load_rows
from eval.metrics import METRIC_NAMES
from rag.settings import PROMPTS_DIR, Settings

pytestmark = pytest.mark.llm

DOC = """Lake Varn is a glacial lake in the fictional canton of Oberhalm.

The lake was surveyed in 1887 by the engineer Petra Lind, who measured a depth of 212 metres.

The village of Sill, on its northern shore, holds a boat festival every August."""

GOLD = [
    {"id": "q1", "question": "Who surveyed Lake Varn?", "answers": ["Petra Lind"],
     "evidence": ["The lake was surveyed in 1887 by the engineer Petra Lind"], "answerable": True},
    {"id": "q2", "question": "How deep is Lake Varn?", "answers": ["212"],
     "evidence": ["measured a depth of 212 metres"], "answerable": True},
    {"id": "q3", "question": "Which village holds a boat festival?", "answers": ["Sill"],
     "evidence": ["The village of Sill, on its northern shore, holds a boat festival"],
     "answerable": True},
    {"id": "q4", "question": "Who is the mayor of Sill?", "answers": [], "evidence": [],
     "answerable": False},
]


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    doc = tmp_path / "varn.txt"
    doc.write_text(DOC, encoding="utf-8")
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(item) + "\n" for item in GOLD), encoding="utf-8")
    return doc, gold


def rag_eval(*args: str, settings: Settings, extra_env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_LLM": "small", "RAG_MODEL_DIR": str(settings.model_dir),
           **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "eval", *args], capture_output=True,
                          text=True, env=env, timeout=900, check=False)


def test_eval_of_another_document_writes_every_metric(
    corpus: tuple[Path, Path], tmp_path: Path, settings: Settings
) -> None:
    doc, gold = corpus
    report, markdown = tmp_path / "r.json", tmp_path / "r.md"
    result = rag_eval("--gold", str(gold), "--docs", str(doc), "--json", str(report),
                      "--markdown", str(markdown), settings=settings)
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    for key in (*METRIC_NAMES, "counts", "n", "model", "prompt", "settings", "per_question"):
        assert key in data
    assert data["counts"]["answer_str_em"][1] == 3
    assert data["counts"]["refusal_accuracy"][1] == 1
    assert data["n"] == 4
    assert data["model"] == "qwen2.5-coder-0.5b-instruct"
    assert data["retrieval_recall_at_k"] == 1.0
    assert data["answer_str_em"] >= 2 / 3
    row = data["per_question"][0]
    assert set(row["pass"]) == {"answer_strict", "answer_em", "answer_str_em", "refusal",
                                "citation_precision", "citation_recall", "retrieval"}
    assert data["explained"] is True  # every draft measured: other policies can be replayed
    assert markdown.read_text().startswith("# Eval report")
    assert "| answer_str_em |" in result.stdout


def test_gate_fails_when_quality_drops(
    corpus: tuple[Path, Path], tmp_path: Path, settings: Settings
) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for kept in ("verify_v1.txt", "resolve_v1.txt"):
        (prompts / kept).write_text((PROMPTS_DIR / kept).read_text())
    # A broken template that never shows the model the passages.
    (prompts / "lazy.txt").write_text(
        "[system]\nAnswer in JSON with found, answer and cite.\n[user]\n$question\n"
    )
    doc, gold = corpus
    env = {"RAG_PROMPTS_DIR": str(prompts), "RAG_PROMPT": "lazy"}
    report = tmp_path / "gate.json"
    # As `make test` gates: measuring only what the service measures.
    result = rag_eval("--gold", str(gold), "--docs", str(doc), "--check", "--as-served",
                      "--json", str(report), settings=settings, extra_env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "quality gate FAILED" in result.stderr
    assert "answer_strict" in result.stderr
    data = json.loads(report.read_text())
    assert data["explained"] is False
    with pytest.raises(ValueError, match="--as-served"):
        load_rows(data)  # its traces cannot be replayed under another policy
