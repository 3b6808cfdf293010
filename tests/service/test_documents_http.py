"""The documents routes on the real service (`rag serve`, the small model): upload a PDF and a
DOCX, ask about them, list, remove; bad uploads refused by name with the index unchanged; a
killed upload; questions during uploads; two replicas over one index."""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eval.sample_files import pdf_bytes, write_docx, write_encrypted_pdf
from index_build.build import build_index
from index_build.uploads import documents_dir
from rag.retrieval.embedder import Embedder
from rag.settings import BUNDLED_CORPUS, Settings
from tests.conftest import make_settings
from tests.documents import kill_mid_write, state, zip_bomb
from tests.servers import Server, running_server

pytestmark = pytest.mark.llm
LIMITS = {"RAG_MAX_UPLOAD_BYTES": "400000", "RAG_MAX_DOCUMENTS": "40",
          "RAG_MAX_DOCUMENT_PAGES": "30", "RAG_MAX_DOCUMENT_CHARS": "50000"}
FERRY = [["The harbour of Varnholm has two piers and a fish market."],
         ["The Varnholm ferry captain is named Ilse Brandt.",
          "She has sailed the ferry since 2009."]]
FERRY_QUESTION = "Who is the captain of the Varnholm ferry?"
BAKERY = ["The Lindqvist bakery in Oravik opened in 1887.",
          "It is known for its cardamom buns."]
BAKERY_QUESTION = "When did the Lindqvist bakery open?"


def own_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, name: str
              ) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp(name) / "index")
    build_index(settings, [BUNDLED_CORPUS], embedder)
    return settings


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    return own_index(tmp_path_factory, embedder, "documents")


@pytest.fixture(scope="module")
def server(index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(index, tmp_path_factory.mktemp("log") / "service.log",
                        **LIMITS) as running:
        yield running


def upload(server: Server, *files: tuple[str, bytes], wait: bool = True) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/documents", params={"wait": str(wait).lower()},
                      files=[("file", (name, data, "application/octet-stream"))
                             for name, data in files], timeout=300)


def raw_upload(server: Server, name: bytes, data: bytes) -> httpx.Response:
    """A multipart body written by hand: a file name no client library would send."""
    boundary = b"b0undary7Tq"
    body = (b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
            b"Content-Type: text/plain\r\n\r\n%s\r\n--%s--\r\n" % (boundary, name, data, boundary))
    media_type = f"multipart/form-data; boundary={boundary.decode()}"
    return httpx.post(f"{server.url}/v1/documents", content=body, timeout=60,
                      headers={"Content-Type": media_type})


def documents(server: Server) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/documents", timeout=10)
    assert response.status_code == 200, response.text
    return {d["id"]: d for d in response.json()["documents"]}


def ask(server: Server, question: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/ask", json={"question": question}, timeout=300)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_uploaded_documents_answer_with_citations_until_removed(
    server: Server, tmp_path: Path
) -> None:
    pdf = pdf_bytes(FERRY)
    docx = write_docx(tmp_path / "bakery.docx", BAKERY).read_bytes()
    response = upload(server, ("Varnholm ferry.pdf", pdf), ("Bakery history.docx", docx))
    assert response.status_code == 201, response.text
    added = response.json()["documents"]
    assert [(d["name"], d["type"], d["status"]) for d in added] == [
        ("Varnholm ferry.pdf", "pdf", "added"), ("Bakery history.docx", "docx", "added")]
    ferry, bakery = added[0]["id"], added[1]["id"]
    listed = documents(server)
    assert listed[ferry]["pages"] == 2 and listed[ferry]["size"] == len(pdf)
    assert listed[bakery]["chunks"] >= 1 and listed[bakery]["checksum"] == added[1]["checksum"]

    answer = ask(server, FERRY_QUESTION)
    assert not answer["refused"] and "Brandt" in answer["answer"], answer
    assert [(c["source"], c["page"]) for c in answer["citations"]] == [(ferry, 2)]
    answer = ask(server, BAKERY_QUESTION)
    assert not answer["refused"] and "1887" in answer["answer"], answer
    assert {c["source"] for c in answer["citations"]} == {bakery}

    again = upload(server, ("a copy.pdf", pdf))
    assert again.status_code == 201 and again.json()["documents"][0]["status"] == "duplicate"
    assert len(documents(server)) == len(listed)

    for doc_id in (ferry, bakery):
        removed = httpx.delete(f"{server.url}/v1/documents/{doc_id}", timeout=300)
        assert removed.status_code == 200, removed.text
    assert set(documents(server)) == {"gsomia_article.txt"}
    assert ask(server, FERRY_QUESTION)["refused"]
    gone = httpx.delete(f"{server.url}/v1/documents/{ferry}", timeout=60)
    assert gone.status_code == 404 and ferry in gone.json()["error"]["message"]


def test_a_slow_upload_can_be_followed_as_a_job(server: Server) -> None:
    response = upload(server, ("owls.txt", b"The snowy owl hunts by day."), wait=False)
    assert response.status_code == 202 and response.json()["status"] == "running"
    job = response.json()["job"]
    deadline = time.time() + 120
    while (status := httpx.get(f"{server.url}/v1/documents/jobs/{job}", timeout=10).json()
           )["status"] == "running":
        assert time.time() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "done" and status["documents"][0]["name"] == "owls.txt"
    httpx.delete(f"{server.url}/v1/documents/{status['documents'][0]['id']}", timeout=300)
    missing = httpx.get(f"{server.url}/v1/documents/jobs/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "unknown_job"


def bad_uploads(tmp_path: Path) -> list[tuple[list[tuple[str, bytes]], int, str]]:
    locked = write_encrypted_pdf(tmp_path / "locked.pdf", FERRY, "secret").read_bytes()
    return [
        ([("huge.txt", b"a" * 400_001)], 413, "huge.txt"),
        ([("photo.pdf", b"\x89PNG\r\n\x1a\n" + bytes(300))], 415, "photo.pdf"),
        ([("locked.pdf", locked)], 422, "locked.pdf"),
        ([("empty.txt", b"")], 422, "empty.txt"),
        ([("scan.pdf", pdf_bytes([[], []]))], 422, "scan.pdf"),  # image-only: no text
        ([("broken.pdf", pdf_bytes(FERRY)[:300])], 422, "broken.pdf"),
        ([("thick.pdf", pdf_bytes([["A page."]] * 31))], 422, "thick.pdf"),
        ([("wordy.txt", b"word " * 10_001)], 422, "wordy.txt"),
        ([("bomb.docx", zip_bomb())], 422, "bomb.docx"),
        ([(f"tiny{n}.txt", b"tiny %d" % n) for n in range(1000)], 422, "tiny999.txt"),
    ]


def test_bad_uploads_are_refused_by_name_and_change_nothing(
    server: Server, index: Settings, tmp_path: Path
) -> None:
    before = state(index)
    for files, status, named in bad_uploads(tmp_path):
        response = upload(server, *files)
        assert response.status_code == status, (named, response.text)
        error = response.json()["error"]
        assert named in {d["file"] for d in error["details"]}, error
        assert named in error["message"] or len(files) > 1
        assert state(index) == before, named
    response = raw_upload(server, b"../../etc/pass\x00wd.txt", b"root:x:0:0")
    assert response.status_code == 422, response.text
    assert "../../etc/pass\\x00wd.txt" in response.json()["error"]["details"][0]["file"]
    assert state(index) == before
    oversized = httpx.post(f"{server.url}/v1/documents", timeout=60,
                           files={"file": ("far too big.txt", b"a" * 2_000_000)})
    assert oversized.status_code == 413 and "RAG_MAX_UPLOAD_BYTES" in oversized.text
    as_json = httpx.post(f"{server.url}/v1/documents", json={"file": "x"}, timeout=10)
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.text
    assert state(index) == before and len(documents(server)) == 1


def test_the_cli_changes_the_same_store_and_the_service_follows(
    server: Server, index: Settings, tmp_path: Path
) -> None:
    note = tmp_path / "cli-note.txt"
    note.write_text("The Oravik lighthouse was built in 1874.", encoding="utf-8")
    cli = [sys.executable, "-m", "rag.cli", "index"]
    where = ["--index-dir", str(index.index_dir)]
    subprocess.run([*cli, "add", str(note), *where], check=True, capture_output=True)
    wait_for(lambda: "cli-note.txt" in documents(server))  # the watcher reloads
    uploaded = upload(server, ("owls.txt", b"Owls hunt at night.")).json()["documents"][0]
    listed = subprocess.run([*cli, "list", "--json", *where], check=True, capture_output=True,
                            text=True)
    assert {d["id"] for d in json.loads(listed.stdout)} == set(documents(server))
    subprocess.run([*cli, "remove", "cli-note.txt", uploaded["id"], *where], check=True,
                   capture_output=True)
    wait_for(lambda: set(documents(server)) == {"gsomia_article.txt"})
    assert not list(documents_dir(index.index_dir).iterdir())  # the stored upload went too


def test_questions_asked_during_three_uploads_are_all_answered(server: Server) -> None:
    facts = [(f"note{n}.txt", f"The Varnholm museum keeps lantern number {n}04.".encode())
             for n in range(3)]
    uploads: list[int] = []
    answers: list[tuple[int, dict[str, Any]]] = []

    def send(name: str, data: bytes) -> None:
        uploads.append(upload(server, (name, data)).status_code)

    def questions(count: int) -> None:
        for _ in range(count):
            response = httpx.post(f"{server.url}/v1/ask", timeout=300,
                                  json={"question": "Who is Japan's foreign minister?"})
            answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=send, args=fact) for fact in facts]
    threads += [threading.Thread(target=questions, args=(5,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert uploads == [201, 201, 201]
    assert [status for status, _ in answers] == [200] * 10
    final = documents(server)
    assert sorted(d["name"] for d in final.values()) == [
        "gsomia_article.txt", "note0.txt", "note1.txt", "note2.txt"]
    for _, body in answers:  # each answer's sources are documents of the index
        assert {c["source"] for c in body["citations"]} <= set(final)
    for doc_id in [d for d in final if d != "gsomia_article.txt"]:
        httpx.delete(f"{server.url}/v1/documents/{doc_id}", timeout=300)


def test_after_an_upload_killed_mid_write_the_old_index_serves_on_restart(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> None:
    settings = own_index(tmp_path_factory, embedder, "killed")
    before = state(settings)
    kill_mid_write(settings)
    assert list(settings.index_dir.parent.glob(".index-*.tmp"))
    with running_server(settings, tmp_path_factory.mktemp("log") / "service.log") as restarted:
        assert not list(settings.index_dir.parent.glob(".index-*.tmp"))
        assert state(settings) == before
        assert set(documents(restarted)) == {"gsomia_article.txt"}
        retried = upload(restarted, ("owls.txt", b"Owls hunt at night."))
        assert retried.status_code == 201, retried.text


def test_a_disk_that_refuses_the_write_gets_507_and_the_old_index_serves_on(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> None:
    settings = own_index(tmp_path_factory, embedder, "quota")
    before = state(settings)
    quota = 600_000  # bytes the service may write to one file: a disk with that much room
    line = (" ".join(BAKERY) + "\n").encode()
    stored_whole = line * (800_000 // len(line))  # held in memory, then refused when stored
    spooled = line * (1_600_000 // len(line))  # beyond 1 MiB: parsed into a temporary file
    with running_server(settings, tmp_path_factory.mktemp("log") / "service.log",
                        file_size_limit=quota) as server:
        for data in (stored_whole, spooled):
            refused = upload(server, ("bakery book.txt", data))
            assert refused.status_code == 507, refused.text
            assert "the index is as it was" in refused.json()["error"]["message"]
            assert state(settings) == before  # no part of the file and no new build kept
        assert set(documents(server)) == {"gsomia_article.txt"}
        assert ask(server, BAKERY_QUESTION)["refused"]  # the old index answers on
        retried = upload(server, ("bakery.txt", " ".join(BAKERY).encode()))
        assert retried.status_code == 201, retried.text
        answer = ask(server, BAKERY_QUESTION)
        assert not answer["refused"] and "1887" in answer["answer"], answer


def wait_for(check: Any, timeout_s: float = 30) -> None:
    deadline = time.time() + timeout_s
    while not check():
        assert time.time() < deadline, "the replicas did not converge"
        time.sleep(0.2)


def test_two_replicas_over_one_index_converge_after_an_upload_and_a_removal(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> None:
    settings = own_index(tmp_path_factory, embedder, "replicas")
    logs = tmp_path_factory.mktemp("logs")
    with running_server(settings, logs / "a.log", RAG_INDEX_WATCH_S="1") as first, \
            running_server(settings, logs / "b.log", RAG_INDEX_WATCH_S="1") as second:
        response = upload(first, ("Varnholm ferry.pdf", pdf_bytes(FERRY)))
        assert response.status_code == 201, response.text
        ferry = response.json()["documents"][0]["id"]
        assert ferry in documents(first)  # exact on the replica that took the upload
        wait_for(lambda: ferry in documents(second))
        answer = ask(second, FERRY_QUESTION)
        assert not answer["refused"] and answer["citations"][0]["source"] == ferry, answer
        removed = httpx.delete(f"{second.url}/v1/documents/{ferry}", timeout=300)
        assert removed.status_code == 200, removed.text
        wait_for(lambda: ferry not in documents(first))
        assert any(e.get("event") == "reloaded" for e in first.events())
