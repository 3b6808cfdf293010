"""`rag serve` in a subprocess on 127.0.0.1 for the HTTP tests: the real app, the real models."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from rag.settings import Settings
from tests.conftest import free_port


class Server:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.readiness: list[int] = []  # /readyz statuses seen while starting

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
                self.readiness.append(response.status_code)
                if response.status_code == 200:
                    return
                assert response.json()["status"] != "failed", response.text
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, f"the server exited while starting: {self.tail()}"
            time.sleep(0.2)
        raise AssertionError(f"the service never became ready: {self.tail()}")

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines the service logged so far."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    pass
        return found

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def hangup(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


@contextmanager
def running_server(settings: Settings, log: Path, ready: bool = True,
                   file_size_limit: int | None = None, **env: str) -> Iterator[Server]:
    """A service over the test index with the small model; ``env`` adds RAG_* settings. With
    ``file_size_limit`` the service cannot write a file beyond that many bytes (RLIMIT_FSIZE):
    such a write fails as on a full disk."""
    port = free_port()
    environ = {**os.environ, "RAG_INDEX_DIR": str(settings.index_dir), "RAG_LLM": "small",
               "RAG_MODEL_DIR": str(settings.model_dir), **env}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
            env=environ, stdout=sink, stderr=subprocess.STDOUT,
            # Set in the child before it runs Python, which ignores SIGXFSZ: the write fails.
            preexec_fn=None if file_size_limit is None else partial(
                resource.setrlimit, resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit)),
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        if ready:
            server.wait_ready()
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def samples(scrape: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics scrape by name and labels, parsed by Prometheus' own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(scrape) for s in family.samples}
