"""The service under load: cold start, throughput with concurrent clients, memory over time.

A real ``rag serve`` process on loopback, driven by real HTTP clients; memory is read from
``/proc/<pid>/status`` (VmRSS now, VmHWM the peak).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import httpx

from eval.metrics import percentile


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    ready_s: float

    def memory_mb(self) -> dict[str, float]:
        fields = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in {"VmRSS", "VmHWM"}:
                    fields[key] = int(value.split()[0]) / 1024
        return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(env: dict[str, str]) -> Iterator[RunningServer]:
    port = _free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("rag serve exited during start-up")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield RunningServer(url, process, time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(timeout=30)


def ask(url: str, question: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/ask", json={"question": question}, timeout=600)
    return response.status_code, time.perf_counter() - started


def stream_timings(server: RunningServer, questions: list[str]) -> dict[str, Any]:
    """Time to first byte and to the first answer delta of /v1/ask/stream."""
    first_byte, first_delta, total = [], [], []
    for question in questions:
        started = time.perf_counter()
        marks: dict[str, float] = {}
        with httpx.stream("POST", f"{server.url}/v1/ask/stream", json={"question": question},
                          timeout=600) as response:
            for line in response.iter_lines():
                marks.setdefault("byte", time.perf_counter())
                if line == "event: delta":
                    marks.setdefault("delta", time.perf_counter())
        total.append(time.perf_counter() - started)
        first_byte.append(marks["byte"] - started)
        if "delta" in marks:
            first_delta.append(marks["delta"] - started)
    return {
        "questions": len(questions),
        "ttfb_p50_s": percentile(first_byte, 50),
        "first_delta_p50_s": percentile(first_delta, 50),
        "total_p50_s": percentile(total, 50),
    }


def _ask_streaming(url: str, question: str) -> tuple[int, float, float | None, str | None]:
    """Status, seconds to the whole answer and to its first text (None: refused unread), and
    the answer (None when there is none)."""
    started = time.perf_counter()
    first: float | None = None
    answer, event = None, ""
    with httpx.stream("POST", f"{url}/v1/ask/stream", json={"question": question},
                      timeout=600) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                if first is None and event in ("delta", "answer"):
                    first = time.perf_counter() - started
            elif event == "answer" and line.startswith("data: "):
                answer = json.loads(line.removeprefix("data: "))["answer"]
    return response.status_code, time.perf_counter() - started, first, answer


def load_level(server: RunningServer, clients: int, questions: list[str]) -> dict[str, Any]:
    """``questions`` from ``clients`` clients at once, streamed: requests/s, latency, TTFT, and
    each question's answers (to compare with one request at a time)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda q: _ask_streaming(server.url, q), questions))
    wall = time.perf_counter() - started
    # A stream that ran out of time is a 200 whose last event is an error: no answer.
    ok = [t for status, t, _, answer in results if status == 200 and answer is not None]
    first = [f for status, _, f, answer in results
             if status == 200 and answer is not None and f is not None]
    answers: dict[str, list[str | None]] = {}
    for question, (_, _, _, answer) in zip(questions, results, strict=True):
        answers.setdefault(question, []).append(answer)
    return {
        "clients": clients,
        "requests": len(results),
        "requests_per_s": len(ok) / wall,
        "p50_s": percentile(ok, 50),
        "p95_s": percentile(ok, 95),
        "ttft_p50_s": percentile(first, 50) if first else None,
        "errors": sum(status >= 500 and status not in (503, 504) for status, *_ in results),
        "rejected_503": sum(status == 503 for status, *_ in results),
        # RAG_REQUEST_TIMEOUT_S counts the wait: deep queues time out by design.
        "timed_out_504": sum(status == 504 for status, *_ in results),
        "client_errors": sum(400 <= status < 500 for status, *_ in results),
        "no_answer": sum(status == 200 and answer is None for status, *_, answer in results),
        "answers": answers,
    }


def differing(run: dict[str, Any], reference: dict[str, list[str | None]]) -> tuple[int, int]:
    """How many answers of a level differ from the reference's first answer to the same
    question, of how many were compared."""
    compared = changed = 0
    for question, answers in run["answers"].items():
        expected = reference.get(question, [None])[0]
        for answer in answers:
            if answer is not None and expected is not None:  # both answered in time
                compared += 1
                changed += answer != expected
    return changed, compared


def throughput(env: dict[str, str], questions: list[str], levels: dict[int, int]
               ) -> dict[str, Any]:
    """Throughput per concurrency level only (the other configurations beside ``measure``)."""
    with serve(env) as server:
        return {"cold_start_to_ready_s": server.ready_s,
                "throughput": _levels(server, cycle(questions), levels)}


def _levels(server: RunningServer, source: Iterator[str], levels: dict[int, int]
            ) -> list[dict[str, Any]]:
    """Each level's load, questions taken from ``source`` in turn; memory after each."""
    return [load_level(server, clients, list(islice(source, requests))) | server.memory_mb()
            for clients, requests in levels.items()]


def measure(
    env: dict[str, str], questions: list[str], levels: dict[int, int], total_questions: int
) -> dict[str, Any]:
    """Throughput per concurrency level, then memory from warm-up to ``total_questions``.

    Growth is counted from the end of the first level: the first questions page in the weights
    and size the buffers once, which is a one-time cost, not growth.
    """
    with serve(env) as server:
        loaded = server.memory_mb()
        source = cycle(questions)
        throughput = _levels(server, source, levels)
        warm = throughput[0] if throughput else loaded
        stream = stream_timings(server, questions[:10])
        answered = sum(level["requests"] for level in throughput) + stream["questions"]
        for question in islice(source, max(0, total_questions - answered)):
            ask(server.url, question)
        after = server.memory_mb()
        return {
            "cold_start_to_ready_s": server.ready_s,
            "throughput": throughput,
            "stream": stream,
            "memory": {
                "after_load_rss_mb": loaded["rss_mb"],
                "warm_rss_mb": warm["rss_mb"],
                "after_questions": max(total_questions, answered),
                "after_questions_rss_mb": after["rss_mb"],
                "peak_rss_mb": after["peak_rss_mb"],
                "growth_mb": after["rss_mb"] - warm["rss_mb"],
            },
        }


def cold_start_first_answer(env: dict[str, str], question: str) -> float:
    """Process start to first answer for `rag ask` (models and index loaded from disk)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli", "ask", question], env={**os.environ, **env},
                   check=True, capture_output=True)
    return time.perf_counter() - started
