"""Hostile uploads against a running service: each answered with a JSON 4xx (or 503 with
Retry-After), the index and stored files unchanged, the service's RSS and the latency of the
questions asked meanwhile recorded, beside the idle latency, in one run.

Cases (sizes by profile): a DOCX whose body is hundreds of MB of empty paragraphs, a PDF whose
pages share one large compressed content stream, a request of several text files at the
character limit, simultaneous uploads, and a flood of ``wait=false`` requests of thousands of
parts with long names.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench import service
from eval.metrics import percentile
from eval.sample_files import pdf_of

SIZES: dict[str, dict[str, int]] = {
    "full": {"docx_body_mb": 200, "pdf_stream_mb": 70, "pdf_pages": 30, "text_files": 15,
             "text_chars": 2_000_000, "simultaneous": 45, "flood_requests": 200,
             "flood_parts": 7_000, "name_bytes": 4_096},
    "quick": {"docx_body_mb": 200, "pdf_stream_mb": 20, "pdf_pages": 10, "text_files": 3,
              "text_chars": 200_000, "simultaneous": 12, "flood_requests": 20,
              "flood_parts": 2_000, "name_bytes": 4_096},
}
SAMPLE_S = 0.1
Attack = Callable[[str], list[httpx.Response]]


def measure(env: dict[str, str], index_dir: Path, questions: list[str],
            profile: str) -> dict[str, Any]:
    sizes = SIZES[profile]
    results: dict[str, Any] = {"sizes": sizes, "cases": {}}
    with service.serve(env) as server:
        results["idle_p50_s"] = _p50(server.url, questions)
        attacks = _attacks(sizes)
        for name, attack in attacks.items():
            before = _state(index_dir)
            case = results["cases"][name] = _under(server, attack, questions)
            if name != list(attacks)[-1]:  # the last one's job runs on until the service stops
                case["queue_drained_s"] = _drained(server.url)
            case["index_unchanged"] = _state(index_dir) == before
    return results


def _under(server: service.RunningServer, attack: Attack,
           questions: list[str]) -> dict[str, Any]:
    """``attack`` sent while ``questions`` are asked one by one; RSS sampled throughout."""
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.memory_mb()["rss_mb"])
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(attack, server.url)
        p50 = _p50(server.url, questions)
        responses = sent.result()
    done.set()
    sampler.join()
    statuses = Counter(r.status_code for r in responses)
    return {
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "json_errors": all(_json_error(r) for r in responses if r.status_code >= 400),
        "retry_after_on_503": all("retry-after" in r.headers
                                  for r in responses if r.status_code == 503),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
        "rss_peak_mb": round(peak[0], 1), "question_p50_s": p50,
        "seconds": round(time.perf_counter() - started, 2),
        "reasons": sorted({_reason(r) for r in responses if r.status_code >= 400})[:3],
    }


def _drained(url: str, limit_s: float = 900.0) -> float | None:
    """Seconds until no upload waits or runs (the next case meets an empty queue), None past
    ``limit_s``."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        scrape = httpx.get(f"{url}/metrics", timeout=30).text
        busy = [line for line in scrape.splitlines()
                if line.startswith(("rag_uploads_waiting ", "rag_uploads_running "))]
        if busy and all(float(line.split()[1]) == 0 for line in busy):
            return round(time.perf_counter() - started, 2)
        time.sleep(1)
    return None


def _p50(url: str, questions: list[str]) -> float:
    return percentile([service.ask(url, q)[1] for q in questions], 50)


def _json_error(response: httpx.Response) -> bool:
    try:
        return "error" in response.json()
    except ValueError:
        return False


def _reason(response: httpx.Response) -> str:
    error = response.json()["error"] if _json_error(response) else {}
    details = error.get("details") or [{}]
    reason = details[0].get("reason") if isinstance(details[0], dict) else None
    return str(reason or error.get("message", response.text))[:160]


def _state(index_dir: Path) -> str:
    """The index and stored files as bytes: a hash over every file below ``index_dir``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in index_dir.rglob("*") if p.is_file() and "kv" not in p.parts):
        digest.update(str(path.relative_to(index_dir)).encode() + path.read_bytes())
    return digest.hexdigest()


def _attacks(sizes: dict[str, int]) -> dict[str, Attack]:
    """The cases in order. The long text request comes last and does not wait: it is queued
    (202) and indexed for many minutes, the questions asked while it is."""
    return {
        f"docx_body_{sizes['docx_body_mb']}mb": lambda url: [_post(url, [(
            "padded.docx", _padded_docx(sizes["docx_body_mb"]))])],
        f"pdf_{sizes['pdf_pages']}_pages_one_{sizes['pdf_stream_mb']}mb_stream": lambda url: [
            _post(url, [("shared.pdf", _shared_stream_pdf(sizes["pdf_stream_mb"],
                                                          sizes["pdf_pages"]))])],
        f"simultaneous_{sizes['simultaneous']}": lambda url: _at_once(url, [
            [(f"note-{i}.txt", _text(1000 + i, 400))] for i in range(sizes["simultaneous"])]),
        f"flood_{sizes['flood_requests']}_of_{sizes['flood_parts']}_parts": lambda url: _at_once(
            url, [[(f"{r:04d}-{p:05d}-" + "n" * sizes["name_bytes"], b"x")
                   for p in range(sizes["flood_parts"])] for r in range(sizes["flood_requests"])],
            wait=False),
        f"text_{sizes['text_files']}x{sizes['text_chars']}_chars": lambda url: [_post(url, [
            (f"long-{i}.txt", _text(i, sizes["text_chars"])) for i in range(sizes["text_files"])],
            wait=False)],
    }


def _post(url: str, files: list[tuple[str, bytes]], wait: bool = True) -> httpx.Response:
    return httpx.post(f"{url}/v1/documents", params={"wait": str(wait).lower()}, timeout=900,
                      files=[("file", f) for f in files])


def _at_once(url: str, requests: list[list[tuple[str, bytes]]],
             wait: bool = True) -> list[httpx.Response]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda files: _post(url, files, wait), requests))


def _padded_docx(megabytes: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        body = b"<w:p/>" * (megabytes * 2**20 // 6)
        archive.writestr("word/document.xml", b"<w:document><w:body>" + body
                         + b"</w:body></w:document>")
    return out.getvalue()


def _shared_stream_pdf(megabytes: int, pages: int) -> bytes:
    """``pages`` pages whose /Contents is one FlateDecode stream of ``megabytes`` of text."""
    line = b"BT /F1 9 Tf 72 700 Td (" + b"Harbour ferry timetable " * 40 + b") Tj ET\n"
    stream = zlib.compress(line * (megabytes * 2**20 // len(line)), 9)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
               % (len(stream), stream)]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"] * pages
    return pdf_of(objects)


def _text(seed: int, chars: int) -> bytes:
    """``chars`` characters of distinct sentences (no two requests send the same content)."""
    sentence = f"Ferry {seed} leaves the harbour of Varn at dawn with its cargo of timber. "
    return (sentence * (chars // len(sentence) + 1))[:chars].encode()
