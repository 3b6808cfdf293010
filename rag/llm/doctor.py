"""``rag doctor``: can this machine run the installed llama.cpp build and models?

It reports the CPU's instruction-set features, which llama.cpp build is installed and whether
it is the one the project chose for this CPU (``rag.llm.llama_build``), and for each installed
model its checksum status and a self-test in a child process (``rag.llm.selftest``) with
prefill and decode speeds. Nothing here loads llama.cpp into this process, so a crashing build
is reported, not suffered.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rag.errors import LlamaBuildError, ModelIntegrityError, ModelNotFoundError
from rag.llm import llama_build, model_files, selftest
from rag.settings import Settings

_SHOWN_FLAGS = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|bmi2|avx512.*|amx.*)$")


@dataclass
class ModelCheck:
    name: str
    path: str
    checksum: str  # "verified", "not installed" or the mismatch message
    selftest: selftest.ProbeResult | None = None

    @property
    def failed(self) -> bool:
        return self.checksum not in {"verified", "not installed", "not checked"} or (
            self.selftest is not None and not self.selftest.ok
        )


@dataclass
class DoctorReport:
    cpu: str
    cpu_features: list[str]
    llama_cpp_version: str
    build_variant: str
    build_cmake_args: str
    build_source: str
    build_warnings: list[str]
    models: list[ModelCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        tested = [m for m in self.models if m.selftest is not None]
        return bool(tested) and not any(m.failed for m in self.models)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def examine(settings: Settings) -> DoctorReport:
    flags = llama_build.cpu_flags()
    report = DoctorReport(
        cpu=f"{_cpu_model()}, {os.cpu_count()} cores",
        cpu_features=sorted(f for f in flags if _SHOWN_FLAGS.match(f)),
        llama_cpp_version=_installed_version(),
        build_variant="",
        build_cmake_args="",
        build_source=llama_build.installed_from() or "unknown (not installed from a wheel file)",
        build_warnings=[],
    )
    try:
        variant = llama_build.choose_variant(flags)
        report.build_variant, report.build_cmake_args = variant.name, variant.cmake_args
    except LlamaBuildError as exc:
        report.build_warnings.append(str(exc))
        variant = None
    report.models = [_check_model(name, path, settings) for name, path in _models(settings)]
    info = next((m.selftest.system_info for m in report.models
                 if m.selftest is not None and m.selftest.system_info), "")
    if variant is not None and info:
        version = llama_build.pinned_version()
        report.build_warnings += llama_build.problems(variant, version, info,
                                                      llama_build.installed_from())
    return report


def render(report: DoctorReport) -> str:
    lines = [
        f"cpu        {report.cpu}; {' '.join(report.cpu_features) or 'no x86 SIMD flags read'}",
        f"llama.cpp  llama-cpp-python {report.llama_cpp_version}; build for this CPU: "
        f"{report.build_variant or '-'} ({report.build_cmake_args or '-'})",
        f"           installed from {report.build_source}",
    ]
    lines += [f"warning    {w}" for w in report.build_warnings]
    info = next((m.selftest.system_info for m in report.models
                 if m.selftest is not None and m.selftest.system_info), "")
    if info:
        lines.append(f"           system info: {info}")
    for m in report.models:
        lines.append(f"model      {m.name} ({m.path}): sha256 {m.checksum}")
        t = m.selftest
        if t is None:
            continue
        if t.ok:
            lines.append(f"           self-test ok: load {t.load_s:.1f} s, prefill "
                         f"{t.prefill_tokens} tokens at {t.prefill_tokens_per_s:.0f} tokens/s, "
                         f"decode {t.decode_tokens} at {t.decode_tokens_per_s:.1f} tokens/s")
        else:
            lines.append(f"           self-test FAILED: {t.message}")
    lines.append("doctor: all checks passed" if report.ok else "doctor: FAILED (see above)")
    return "\n".join(lines)


def first_failure(report: DoctorReport) -> str:
    for m in report.models:
        if m.selftest is not None and not m.selftest.ok:
            return m.selftest.message
        if m.failed:
            return f"{m.name}: {m.checksum}"
    return "no model is installed: run `make install`"


def _models(settings: Settings) -> list[tuple[str, Path]]:
    found = [
        (spec.name, settings.model_dir / spec.filename) for spec in
        model_files.KNOWN_MODELS.values()
    ]
    if settings.model_path is not None:
        found.append((settings.model_path.stem, settings.model_path))
    return found


def _check_model(name: str, path: Path, settings: Settings) -> ModelCheck:
    spec = next((s for s in model_files.KNOWN_MODELS.values() if s.name == name), None)
    if not path.is_file():
        return ModelCheck(name, str(path), "not installed")
    checksum = "not checked"  # a RAG_MODEL_PATH file has no published checksum
    if spec is not None:
        try:
            model_files.model_file(spec, path.parent)
            checksum = "verified"
        except (ModelNotFoundError, ModelIntegrityError) as exc:
            return ModelCheck(name, str(path), f"MISMATCH: {exc}")
    return ModelCheck(name, str(path), checksum, selftest.probe(path, name, settings.threads))


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown CPU"


def _installed_version() -> str:
    try:
        return metadata.version(llama_build.PACKAGE)
    except metadata.PackageNotFoundError:
        return "not installed"
