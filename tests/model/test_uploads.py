"""Documents sent to the service, below HTTP: typed by content, named safely, held to the limits,
all or nothing, never indexed twice, and never a half-written index (a full disk, a killed
process). The real embedder and index builder; no language model."""

import errno
import io
import os
import zipfile
from pathlib import Path

import pytest

from eval.sample_files import pdf_bytes, write_docx, write_encrypted_pdf
from index_build import writing
from index_build.build import build_index
from index_build.uploads import (
    Upload,
    add_uploads,
    documents_dir,
    remove_documents_and_files,
    stored_name,
    suffix_by_content,
    tidy_when_idle,
)
from rag.errors import (
    DocumentRejectedError,
    DocumentTooLargeError,
    StorageError,
    UnsupportedDocumentError,
)
from rag.retrieval import store
from rag.retrieval.embedder import Embedder
from rag.settings import Settings
from tests.conftest import make_settings
from tests.documents import assert_spans_in_step, kill_mid_write, state, tiny_corpus, zip_bomb

HERON = [["The grey heron of Lake Varn nests in March."], ["It eats perch and roach."]]


@pytest.fixture
def index(tmp_path: Path, embedder: Embedder) -> Settings:
    settings = make_settings(tmp_path / "index", max_documents=6, max_upload_bytes=400_000,
                             max_document_pages=3, max_document_chars=2_000)
    build_index(settings, [tiny_corpus(tmp_path / "corpus", 2)], embedder)
    return settings


def docx_bytes(tmp_path: Path, paragraphs: list[str]) -> bytes:
    return write_docx(tmp_path / "made.docx", paragraphs).read_bytes()


@pytest.mark.parametrize(("data", "name", "suffix"), [
    (pdf_bytes(HERON), "report.txt", ".pdf"),  # the content decides, not the name
    (b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", "page.txt", ".html"),
    (b"# Title\n\nText.", "notes.md", ".md"),
    (b"# Title\n\nText.", "notes.pdf", ".txt"),
    ("Ünïcode text.".encode(), "plain", ".txt"),
])
def test_the_type_is_read_from_the_content(data: bytes, name: str, suffix: str) -> None:
    assert suffix_by_content(data, name) == suffix


def test_a_docx_is_told_from_another_zip(tmp_path: Path) -> None:
    assert suffix_by_content(docx_bytes(tmp_path, ["Hello."]), "x.pdf") == ".docx"
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("a.txt", "hello")
    with pytest.raises(UnsupportedDocumentError, match="zip archive, not a DOCX"):
        suffix_by_content(other.getvalue(), "a.docx")


def test_an_old_or_locked_word_file_is_refused_as_the_cli_refuses_it() -> None:
    with pytest.raises(UnsupportedDocumentError,
                       match=r"locked\.docx is a password-protected or old binary Word file"):
        suffix_by_content(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "locked.docx")


@pytest.mark.parametrize(("data", "looks_like"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(range(256)), "JPEG image"),
    (bytes(range(256)) * 4, "binary data"),
])
def test_binary_content_is_refused_whatever_its_name(data: bytes, looks_like: str) -> None:
    with pytest.raises(UnsupportedDocumentError, match=f"x.pdf is not .*{looks_like}"):
        suffix_by_content(data, "x.pdf")


def test_stored_names_are_made_here_from_safe_characters() -> None:
    name = stored_name("Q3 Report (final) — ÉTÉ.pdf", "ab" * 32, ".pdf")
    assert name == "q3-report-final-t-abababababab.pdf"
    assert stored_name("!!!.txt", "cd" * 32, ".txt") == "document-cdcdcdcdcdcd.txt"


def test_uploads_are_indexed_listed_under_their_names_and_never_twice(
    index: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    pdf = pdf_bytes(HERON)
    outcomes = add_uploads(index, [Upload("Heron report.pdf", pdf),
                                   Upload("birds.docx", docx_bytes(tmp_path, ["Swifts sleep."])),
                                   Upload("again.pdf", pdf)], embedder)
    assert [o.status for o in outcomes] == ["added", "added", "duplicate"]
    heron = outcomes[0].document
    assert (heron.name, heron.kind, heron.pages, heron.bytes) == ("Heron report.pdf", "pdf", 2,
                                                                 len(pdf))
    assert heron.doc_id.startswith("heron-report-") and heron.doc_id.endswith(".pdf")
    assert outcomes[2].document == heron
    again = add_uploads(index, [Upload("third name.pdf", pdf)], embedder)
    assert [o.status for o in again] == ["duplicate"]
    manifest = store.read_manifest(index.index_dir)
    assert len(manifest.documents) == 4
    assert sorted(p.name for p in documents_dir(index.index_dir).iterdir()) == sorted(
        [heron.doc_id, outcomes[1].document.doc_id])
    assert_spans_in_step(store.load_index(index.index_dir, embedder.name), embedder)
    removed = remove_documents_and_files(index, [heron.doc_id])
    assert heron.doc_id not in {d.doc_id for d in removed.manifest.documents}
    assert not (documents_dir(index.index_dir) / heron.doc_id).exists()
    assert_spans_in_step(store.load_index(index.index_dir, embedder.name), embedder)


def test_a_removal_from_another_working_directory_removes_that_file_only(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index named relative to where uploads were made, removed from elsewhere by its
    absolute path (``rag index remove`` run from another directory)."""
    monkeypatch.chdir(tmp_path)
    relative = make_settings(Path("index"), max_documents=6)
    build_index(relative, [tiny_corpus(tmp_path / "corpus", 2)], embedder)
    kept, dropped = (add_uploads(relative, [Upload(name, text)], embedder)[0].document
                     for name, text in [("kept.txt", b"Herons nest in March."),
                                        ("dropped.txt", b"Swifts sleep on the wing.")])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    remove_documents_and_files(make_settings(tmp_path / "index"), [dropped.doc_id])
    stored = sorted(p.name for p in documents_dir(tmp_path / "index").iterdir())
    assert stored == [kept.doc_id]


@pytest.mark.parametrize(("upload", "error", "says"), [
    (Upload("big.txt", b"a" * 400_001), DocumentTooLargeError, "big.txt is 400,001 bytes"),
    (Upload("photo.pdf", b"\x89PNG\r\n\x1a\n" + bytes(200)), UnsupportedDocumentError,
     "photo.pdf is not a PDF"),
    (Upload("empty.txt", b""), DocumentRejectedError, "empty.txt is empty"),
    (Upload("blank.txt", b" \n\n "), DocumentRejectedError, "blank.txt is empty"),
    (Upload("scan.pdf", pdf_bytes([[], []])), DocumentRejectedError, "scan.pdf has no text"),
    (Upload("broken.pdf", pdf_bytes(HERON)[:300]), DocumentRejectedError,
     "cannot read broken.pdf as PDF"),
    (Upload("long.pdf", pdf_bytes([["Page."]] * 4)), DocumentRejectedError,
     "long.pdf has 4 pages, more than the 3"),
    (Upload("wordy.txt", b"word " * 500), DocumentRejectedError,
     "wordy.txt holds 2,500 characters"),
    (Upload("bomb.docx", zip_bomb()), DocumentRejectedError, "bomb.docx inflates to 300 MB"),
    (Upload("../../etc/passwd", b"root"), DocumentRejectedError, "holds a path"),
    (Upload("a\x00b.txt", b"text"), DocumentRejectedError, "control characters"),
    (Upload("report\u202etxt.exe", b"text"), DocumentRejectedError, "control characters"),
])
def test_a_refused_upload_names_the_file_and_changes_nothing(
    index: Settings, embedder: Embedder, upload: Upload, error: type[Exception], says: str
) -> None:
    before = state(index)
    good = Upload("good.txt", b"A fine document about owls.")
    with pytest.raises(error, match=says) as refused:
        add_uploads(index, [good, upload], embedder)
    assert isinstance(refused.value, DocumentRejectedError)
    assert len(refused.value.failures) == 1  # the good file is not blamed, nor indexed
    assert state(index) == before


def test_an_encrypted_pdf_is_refused(index: Settings, embedder: Embedder, tmp_path: Path) -> None:
    locked = write_encrypted_pdf(tmp_path / "locked.pdf", HERON, "secret").read_bytes()
    before = state(index)
    with pytest.raises(DocumentRejectedError, match=r"locked\.pdf is an encrypted PDF"):
        add_uploads(index, [Upload("locked.pdf", locked)], embedder)
    assert state(index) == before


def test_files_beyond_the_document_limit_are_refused_by_name(
    index: Settings, embedder: Embedder
) -> None:
    before = state(index)
    tiny = [Upload(f"t{n}.txt", f"Tiny note {n}.".encode()) for n in range(1000)]
    with pytest.raises(DocumentRejectedError, match="RAG_MAX_DOCUMENTS") as refused:
        add_uploads(index, tiny, embedder)
    # 2 documents held, room for 4 more: the other 996 are named.
    assert [name for name, _ in refused.value.failures] == [f"t{n}.txt" for n in range(4, 1000)]
    assert state(index) == before


def test_a_full_disk_half_way_through_the_index_write_changes_nothing(
    index: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = state(index)
    real = writing._write_jsonl

    def fill_the_disk(path: Path, records: object) -> None:
        real(path, records)  # type: ignore[arg-type]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writing, "_write_jsonl", fill_the_disk)
    with pytest.raises(StorageError, match="No space left on device"):
        add_uploads(index, [Upload("owls.txt", b"Owls hunt at night.")], embedder)
    assert state(index) == before
    assert not list(index.index_dir.parent.glob(".*.tmp"))
    monkeypatch.undo()
    outcome, = add_uploads(index, [Upload("owls.txt", b"Owls hunt at night.")], embedder)
    assert outcome.status == "added"  # the same upload, retried


def test_a_killed_upload_leaves_the_old_index_and_is_tidied_then_retried(
    index: Settings, embedder: Embedder
) -> None:
    before = state(index)
    kill_mid_write(index)
    assert state(index)[:2] == before[:2]  # the link and the manifest it points at
    assert list(index.index_dir.parent.glob(".index-*.tmp"))  # it did die mid-write
    assert state(index)[2] != before[2]  # and left its stored upload behind
    tidy_when_idle(index.index_dir)
    assert not list(index.index_dir.parent.glob(".index-*.tmp"))
    assert state(index) == before
    outcome, = add_uploads(index, [Upload("owls.txt", b"Owls hunt at night.")], embedder)
    assert outcome.status == "added"
