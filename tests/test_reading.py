from pathlib import Path

import pytest

from index_build.reading import html_to_text, read_documents
from rag.errors import InputError


def test_folder_is_walked_and_ids_are_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("Alpha text.", encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("# Beta\n\nBeta text.", encoding="utf-8")
    (tmp_path / "sub" / "c.html").write_text("<p>Gamma</p>", encoding="utf-8")
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    docs = read_documents([tmp_path])
    assert [d.doc_id for d in docs] == ["a.txt", "sub/b.md", "sub/c.html"]
    assert docs[1].text == "# Beta\n\nBeta text."


def test_html_keeps_visible_text_as_paragraphs() -> None:
    html = """<html><head><title>T</title><style>p{}</style><script>var x;</script></head>
    <body><h1>Head&amp;line</h1><p>First <b>bold</b> para.</p><div>Second</div></body></html>"""
    assert html_to_text(html) == "T\n\nHead&line\n\nFirst bold para.\n\nSecond"


def test_missing_path_is_a_clear_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_documents([tmp_path / "nope.txt"])


def test_unsupported_file_is_rejected(tmp_path: Path) -> None:
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF")
    with pytest.raises(InputError, match="unsupported file type"):
        read_documents([pdf])


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        read_documents([bad])


def test_empty_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no readable documents"):
        read_documents([tmp_path])
