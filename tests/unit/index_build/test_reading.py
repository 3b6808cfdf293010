import zipfile
import zlib
from pathlib import Path

import pypdf
import pytest

from eval.sample_files import pdf_of, write_docx, write_encrypted_pdf, write_pdf
from index_build.reading import MAX_DOCX_XML_BYTES, html_to_text, read_document, read_documents
from rag.errors import InputError

PAGES = [
    ["The first page opens the report.", "It has two sentences on two lines."],
    ["Page two talks about (bracketed) budgets.", "Budgets rose by 4 percent."],
    ["The last page ends the report."],
]


def test_folder_is_walked_and_ids_are_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("Alpha text.", encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("# Beta\n\nBeta text.", encoding="utf-8")
    (tmp_path / "sub" / "c.html").write_text("<p>Gamma</p>", encoding="utf-8")
    write_pdf(tmp_path / "sub" / "d.pdf", [["Delta text."]])
    write_docx(tmp_path / "e.docx", ["Epsilon text."])
    (tmp_path / "ignored.rtf").write_text("{\\rtf1 no}", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    docs = read_documents([tmp_path])
    assert [d.doc_id for d in docs] == ["a.txt", "e.docx", "sub/b.md", "sub/c.html", "sub/d.pdf"]
    assert docs[2].text == "# Beta\n\nBeta text."
    assert [d.text for d in docs[3:]] == ["Gamma", "Delta text."]
    assert docs[1].text == "Epsilon text."


def test_html_keeps_visible_text_as_paragraphs() -> None:
    html = """<html><head><title>T</title><style>p{}</style><script>var x;</script></head>
    <body><h1>Head&amp;line</h1><p>First <b>bold</b> para.</p><div>Second</div></body></html>"""
    assert html_to_text(html) == "T\n\nHead&line\n\nFirst bold para.\n\nSecond"


def test_missing_path_is_a_clear_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_documents([tmp_path / "nope.txt"])


def test_unsupported_file_is_rejected(tmp_path: Path) -> None:
    rtf = tmp_path / "x.rtf"
    rtf.write_text("{\\rtf1 no}", encoding="utf-8")
    with pytest.raises(InputError, match="unsupported file type"):
        read_documents([rtf])


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        read_documents([bad])


def test_empty_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no readable documents"):
        read_documents([tmp_path])


def test_pdf_pages_are_paragraphs_and_every_offset_knows_its_page(tmp_path: Path) -> None:
    doc = read_document(write_pdf(tmp_path / "report.pdf", PAGES), "report.pdf")
    pages = doc.text.split("\n\n")
    assert pages == ["\n".join(lines) for lines in PAGES]
    assert doc.page_starts == (0, len(pages[0]) + 2, len(pages[0]) + len(pages[1]) + 4)
    for number, lines in enumerate(PAGES, start=1):
        for line in lines:
            start = doc.text.index(line)
            assert doc.page_at(start) == doc.page_at(start + len(line) - 1) == number
    assert doc.page_at(len(doc.text)) == 3


def test_empty_pages_keep_the_numbering(tmp_path: Path) -> None:
    doc = read_document(write_pdf(tmp_path / "gap.pdf", [["One."], [], ["Three."]]), "gap.pdf")
    assert doc.page_at(doc.text.index("Three.")) == 3
    assert doc.page_at(doc.text.index("One.")) == 1


def test_non_paged_formats_have_no_pages(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Alpha.", encoding="utf-8")
    assert read_document(tmp_path / "a.txt", "a.txt").page_at(0) is None


def test_pdf_that_needs_a_password_is_refused(tmp_path: Path) -> None:
    pdf = write_encrypted_pdf(tmp_path / "secret.pdf", PAGES, user_password="secret")
    with pytest.raises(InputError, match=r"secret\.pdf is an encrypted PDF that needs a password"):
        read_document(pdf, "secret.pdf")


def test_pdf_encrypted_only_against_copying_is_read(tmp_path: Path) -> None:
    pdf = write_encrypted_pdf(tmp_path / "restricted.pdf", PAGES, user_password="")
    doc = read_document(pdf, "restricted.pdf")
    assert doc.text.startswith("The first page opens the report.")
    assert len(doc.page_starts) == 3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "empty.txt is empty"),
        ("empty.pdf", b"", "empty.pdf is empty"),
        ("blank.md", b"  \n\n ", "blank.md has no text to index"),
        ("corrupt.pdf", b"%PDF-1.4\nthis is not a pdf", "cannot read .*corrupt.pdf as PDF"),
        ("corrupt.docx", b"PK\x03\x04 not a zip", "cannot read .*corrupt.docx as DOCX"),
        ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100),
         "password-protected or old binary Word file"),
    ],
)
def test_broken_files_are_clear_input_errors(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_document(path, name)


def test_pdf_without_text_suggests_ocr(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "scan.pdf", [[], []])
    with pytest.raises(InputError, match=r"no text to index \(a scanned PDF needs OCR"):
        read_document(pdf, "scan.pdf")


def test_docx_paragraphs_and_table_rows_in_order(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "memo.docx", ["Memo title", "", "First   paragraph here."],
                      table=[["Name", "Role"], ["Kono", "Minister"]])
    doc = read_document(path, "memo.docx")
    assert doc.text == "Memo title\n\nFirst paragraph here.\n\nName | Role\n\nKono | Minister"
    assert doc.page_starts == ()


@pytest.mark.parametrize("part", ["word/document.xml", "word/media/body.png"])
def test_a_docx_xml_part_too_large_to_parse_is_refused_unread(tmp_path: Path, part: str) -> None:
    """Empty paragraphs compress a thousandfold; python-docx would hold ~30 bytes per byte. The
    relationships may name any part the body, so the name does not matter, its content does."""
    path = tmp_path / "padded.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/media/photo.png", b"\x89PNG\r\n\x1a\n" + bytes(MAX_DOCX_XML_BYTES))
        archive.writestr(part, b"<w:p/>" * (MAX_DOCX_XML_BYTES // 6 + 1))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(InputError, match=rf"padded.docx's XML part {part} is 48 MB"):
        read_document(path, "padded.docx")


def test_pdf_extraction_stops_at_the_first_page_past_the_character_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = write_pdf(tmp_path / "long.pdf", [[f"Page {i} has a line of text."] for i in range(6)])
    extracted = []
    extract = pypdf.PageObject.extract_text
    monkeypatch.setattr(pypdf.PageObject, "extract_text",
                        lambda page, *a, **k: extracted.append(1) or extract(page, *a, **k))
    with pytest.raises(InputError, match=r"long.pdf holds .* RAG_MAX_DOCUMENT_CHARS"):
        read_document(pdf, "long.pdf", max_chars=40)
    assert len(extracted) == 2
    assert read_document(pdf, "long.pdf", max_chars=1000).text.count("Page") == 6


def test_a_pdf_page_drawing_megabytes_of_content_is_refused_before_extraction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thirty pages sharing one compressed stream of 5 MB of text (a file of kilobytes): no page's
    text is extracted, the refusal names the file, the page and the limit."""
    line = b"BT /F1 9 Tf 72 700 Td (" + b"Harbour ferry timetable " * 40 + b") Tj ET\n"
    stream = zlib.compress(line * (5 * 2**20 // len(line)), 9)
    pages = 30
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    pdf = tmp_path / "shared.pdf"
    pdf.write_bytes(pdf_of([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
        *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
          b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"] * pages]))
    assert pdf.stat().st_size < 100_000
    monkeypatch.setattr(pypdf.PageObject, "extract_text", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(InputError, match=r"shared.pdf's page 1 has 5 MB of content, more than "
                                         r"the 4 MB a PDF page may"):
        read_document(pdf, "shared.pdf")
