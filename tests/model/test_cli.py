"""The `rag` command as a user runs it: a real subprocess, real exit codes, no tracebacks."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval.sample_files import write_encrypted_pdf
from rag.cli import format_answer
from rag.retrieval.store import MANIFEST
from rag.settings import Settings
from rag.types import Answer, Citation
from tests.conftest import ARTICLE
from tests.documents import tiny_corpus

RAG = [sys.executable, "-m", "rag.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RAG, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False
    )


@pytest.fixture
def env(settings: Settings, article_index: object) -> dict[str, str]:
    return {
        **os.environ,
        "RAG_INDEX_DIR": str(settings.index_dir),
        "RAG_MODEL_DIR": str(settings.model_dir),
        "RAG_LLM": "small",
    }


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.llm
def test_ask_json_prints_the_answer_contract(env: dict[str, str]) -> None:
    result = run("ask", "--json", "Who is Japan's foreign minister quoted in the article?", env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "Motegi" in answer["answer"] and answer["refused"] is False
    citation = answer["citations"][0]
    assert ARTICLE[citation["start"] : citation["end"]] == citation["quote"]


@pytest.mark.llm
def test_chat_answers_rewrites_a_follow_up_and_quits(env: dict[str, str], tmp_path: Path) -> None:
    typed = "Who is Japan's foreign minister?\nWhere did he speak to reporters?\n/quit\n"
    result = subprocess.run([*RAG, "chat"], input=typed, capture_output=True, text=True,
                            env={**env, "HOME": str(tmp_path)}, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    searching = [line for line in result.stdout.splitlines() if "(searching for:" in line]
    assert len(searching) == 1 and "Motegi" in searching[0], result.stdout
    first, follow_up = result.stdout.split(searching[0], 1)
    assert "Motegi" in first  # the first question is answered as asked
    assert "Nagoya" in follow_up


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "   "], "the question is empty"),
        (["index", "build", "/no/such/file.txt"], "no such file or folder"),
        (["ask", "hi", "--top-k", "0"], "top_k must be at least 1"),
        (["ask", "hi", "--prompt", "nope"], "prompt template 'nope' not found"),
        (["ask", "hi", "--min-confidence", "2"], "min_confidence must be between 0 and 1"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = run(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    _no_traceback(result)


def test_unreadable_file_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    result = run("index", "build", str(bad), env={**env, "RAG_INDEX_DIR": str(tmp_path / "i")})
    assert result.returncode == 2
    assert "not UTF-8" in result.stderr
    _no_traceback(result)


def test_bad_setting_in_the_environment_exits_2(env: dict[str, str]) -> None:
    result = run("ask", "hi", env={**env, "RAG_TOP_K": "many"})
    assert result.returncode == 2
    assert "RAG_TOP_K='many' is not valid" in result.stderr


def test_index_built_with_other_models_exits_2(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    copy = tmp_path / "index"
    shutil.copytree(settings.index_dir.resolve(), copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["embed_model"] = "bge-small-en"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    result = run("ask", "Who is Motegi?", env={**env, "RAG_INDEX_DIR": str(copy)})
    assert result.returncode == 2
    assert "built with embedding model 'bge-small-en'" in result.stderr
    _no_traceback(result)


def test_missing_custom_index_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    result = run("ask", "Who is Motegi?", env={**env, "RAG_INDEX_DIR": str(tmp_path / "none")})
    assert result.returncode == 2
    assert "rag index build" in result.stderr


def test_index_build_then_unchanged(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index")}
    first = run("index", "build", env=env)
    assert first.returncode == 0, first.stderr
    assert "Indexed 1 document(s)" in first.stdout
    second = run("index", "build", env=env)
    assert "is up to date" in second.stdout
    info = json.loads(run("index", "info", env=env).stdout)
    assert info["documents"][0]["doc_id"] == "gsomia_article.txt"


@pytest.mark.llm
def test_first_question_builds_the_bundled_index_at_the_default_location(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAG_INDEX_DIR"}
    result = run("ask", "Where did Motegi talk to reporters?", env={**env, "RAG_LLM": "small"},
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "indexing the bundled article first" in result.stderr
    assert (tmp_path / "var" / "index" / MANIFEST).is_file()
    assert "[1] gsomia_article.txt, characters" in result.stdout  # numbered citations


def test_citations_show_the_page_of_paged_documents() -> None:
    cite = {"chunk_id": "x#0", "start": 120, "end": 140, "quote": "The harbor master.",
            "score": 0.9}
    answer = Answer(
        question="Who?", answer="Ingrid", refused=False, passages=[], model="m", prompt="p",
        citations=[Citation(id=1, source="report.pdf", page=3, **cite),
                   Citation(id=2, source="notes.txt", page=None, **cite)],
    )
    text = format_answer(answer)
    assert "[1] report.pdf, page 3, characters 120-140:" in text
    assert "[2] notes.txt, characters 120-140:" in text


def test_index_add_and_remove(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index")}
    docs = tiny_corpus(tmp_path / "docs", 3)
    assert run("index", "build", str(docs), env=env).returncode == 0
    (tmp_path / "extra.txt").write_text("A lighthouse keeper counts ships.", encoding="utf-8")
    added = run("index", "add", str(tmp_path / "extra.txt"), env=env)
    assert added.returncode == 0, added.stderr
    assert "Indexed 4 document(s)" in added.stdout
    assert "embedded 1 chunk(s) of 1 new or changed document(s), reused 3" in added.stdout
    removed = run("index", "remove", "doc001.txt", env=env)
    assert removed.returncode == 0, removed.stderr
    assert "reused 3, removed 1 document(s)" in removed.stdout
    unknown = run("index", "remove", "nope.txt", env=env)
    assert unknown.returncode == 2
    assert "has no document 'nope.txt'" in unknown.stderr
    _no_traceback(unknown)
    info = json.loads(run("index", "info", env=env).stdout)
    assert [d["doc_id"] for d in info["documents"]] == ["doc000.txt", "doc002.txt", "extra.txt"]


def test_each_unreadable_file_gets_a_line_and_nothing_is_indexed(tmp_path: Path) -> None:
    index = tmp_path / "index"
    docs = tiny_corpus(tmp_path / "docs", 2)
    (docs / "empty.md").write_bytes(b"")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 cut short")
    write_encrypted_pdf(docs / "locked.pdf", [["Secret."]], user_password="pw")
    result = run("index", "build", str(docs), env={**os.environ, "RAG_INDEX_DIR": str(index)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4, result.stderr
    assert "broken.pdf as PDF" in lines[0]
    assert "empty.md is empty" in lines[1]
    assert "locked.pdf is an encrypted PDF that needs a password" in lines[2]
    assert lines[3].startswith("rag: error: 3 of 5 file(s) could not be read, so nothing was")
    assert not index.exists() and not list(tmp_path.glob(".index-*"))
    _no_traceback(result)
