"""llama.cpp builds side by side: the installed (project) build against other builds.

The reference is llama.cpp's default build (``GGML_NATIVE=ON``, ``-march=native``), which the
project no longer installs because it crashes on AMX machines. Each build runs the same child
self-test (``rag.llm.selftest``: one batched prefill, then greedy decode steps) on the same model,
alternating builds round by round so drift hits all of them alike; medians are reported. Other
builds come from the project's wheel cache (``rag.llm.llama_build``; built there once if missing,
about 5 minutes each) and are unpacked into a scratch folder put first on the child's path.
"""

from __future__ import annotations

import statistics
import zipfile
from pathlib import Path
from typing import Any

from rag.llm import llama_build, selftest

PREFILL, DECODE, ROUNDS = 512, 32, 3


def measure(model_path: Path, name: str, threads: int, others: list[str],
            scratch: Path) -> dict[str, Any]:
    builds: dict[str, Path | None] = {"installed": None}
    version = llama_build.pinned_version()
    for variant in others:
        wheel = llama_build.build_wheel(llama_build.VARIANTS[variant], version)
        target = scratch / variant
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        for library in target.rglob("*.so*"):
            library.chmod(0o755)
        builds[variant] = target
    runs: dict[str, list[selftest.ProbeResult]] = {label: [] for label in builds}
    for _ in range(ROUNDS):
        for label, path in builds.items():
            result = selftest.probe(model_path, name, threads, PREFILL, DECODE, extra_path=path)
            if not result.ok:
                raise RuntimeError(f"{label} build: {result.message}")
            runs[label].append(result)
    summary = {label: _medians(results) for label, results in runs.items()}
    reference = summary.get("native")
    if reference:
        for stats in summary.values():
            stats["prefill_vs_native"] = stats["prefill_tokens_per_s"] / reference[
                "prefill_tokens_per_s"]
            stats["decode_vs_native"] = stats["decode_tokens_per_s"] / reference[
                "decode_tokens_per_s"]
    return {"model": name, "threads": threads, "prefill_tokens": PREFILL,
            "decode_tokens": DECODE, "rounds": ROUNDS,
            "installed_variant": llama_build.choose_variant(llama_build.cpu_flags()).name,
            "builds": summary, "target": "installed within 5% of native (ratio >= 0.95)"}


def _medians(results: list[selftest.ProbeResult]) -> dict[str, Any]:
    return {
        "prefill_tokens_per_s": statistics.median(r.prefill_tokens_per_s for r in results),
        "decode_tokens_per_s": statistics.median(r.decode_tokens_per_s for r in results),
        "system_info": results[0].system_info,
    }
