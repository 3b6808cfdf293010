"""`python -m eval --doc`: the gold questions of one document, asked of that document alone (no
model)."""

import json
from pathlib import Path

import pytest

from eval.gold import load_gold, select
from eval.runner import docs_named, eval_parser, of_docs
from rag.errors import InputError


def write_gold(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def record(id_: str, doc: object = None) -> dict[str, object]:
    base: dict[str, object] = {"id": id_, "question": f"q {id_}?", "answers": [], "evidence": [],
                               "answerable": False}
    return base if doc is None else base | {"doc": doc}


def test_gold_items_keep_their_doc(tmp_path: Path) -> None:
    items = load_gold(write_gold(tmp_path / "g.jsonl", [record("a", "Normans"), record("b")]))
    assert [(item.id, item.doc) for item in items] == [("a", "Normans"), ("b", None)]


def test_a_doc_that_is_not_a_string_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'doc' must be a str"):
        load_gold(write_gold(tmp_path / "g.jsonl", [record("a", 3)]))


def test_doc_filter_keeps_only_that_documents_questions_before_sampling(tmp_path: Path) -> None:
    records = [record(f"n{i}", "Normans") for i in range(5)]
    records += [record(f"c{i}", "Complexity") for i in range(7)]
    items = load_gold(write_gold(tmp_path / "g.jsonl", records))
    assert of_docs(items, None) == items
    kept = of_docs(items, ["Complexity"])
    assert [item.id for item in kept] == [f"c{i}" for i in range(7)]
    assert {item.doc for item in select(kept, None, 3, 13)} == {"Complexity"}
    assert len(of_docs(items, ["Complexity", "Normans"])) == 12
    with pytest.raises(InputError, match=r"no gold question has doc 'Vikings'.*Normans"):
        of_docs(items, ["Vikings"])


def test_only_the_named_document_files_are_indexed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("Normans.txt", "Complexity.txt", "Normans_notes.md", ".hidden.txt"):
        (docs / name).write_text("text", encoding="utf-8")
    assert docs_named([docs], ["Normans"]) == [docs / "Normans.txt"]
    assert docs_named([docs / "Complexity.txt", docs], ["Complexity"]) == [docs / "Complexity.txt"]
    assert docs_named([docs], ["Normans", "Complexity"]) == [
        docs / "Complexity.txt", docs / "Normans.txt",
    ]
    with pytest.raises(InputError, match="no document named 'Vikings'"):
        docs_named([docs], ["Vikings"])


def test_doc_option_is_repeatable() -> None:
    args = eval_parser().parse_args(
        ["--gold", "g.jsonl", "--docs", "d", "--doc", "Normans", "--doc", "Complexity"]
    )
    assert args.doc_names == ["Normans", "Complexity"]
    assert eval_parser().parse_args(["--gold", "g.jsonl"]).doc_names is None
