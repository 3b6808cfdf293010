"""How llama-cpp-python is compiled for this project: explicit CPU flags, never ``-march=native``.

PyPI has only the source archive of llama-cpp-python, so pip compiles llama.cpp on every new
machine, by default with ``GGML_NATIVE=ON`` (``-march=native``). On a CPU that advertises AMX
that build turns on llama.cpp's AMX matrix path, which dies with SIGILL on the first batched
prefill. So ``make install`` builds the wheel itself, with one of two explicit variants:

- ``avx2``: the x86-64 baseline (AVX, AVX2, FMA, F16C, BMI2); runs on any AVX2 machine;
- ``avx512``: the same plus AVX-512 F/CD/VL/DQ/BW, VBMI, VNNI and BF16, chosen only when the CPU
  has every one of them (README, Installation: measured against the baseline and native build).

No variant ever enables AMX. pip's wheel cache does not key on ``CMAKE_ARGS`` (a wheel built
with other flags would be reused silently), so the wheel is built with pip's cache off into a
folder of ours whose name carries a hash of the flags, installed from there, and checked: the
installed distribution must come from that wheel and ``llama_print_system_info()`` must report
exactly the variant's CPU features. A mismatch rebuilds it.

Standard library only: this runs before any dependency is installed
(``python -m rag.llm.llama_build install|check|wheel VARIANT|show``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rag.errors import LlamaBuildError

PACKAGE = "llama-cpp-python"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Compile-time features llama.cpp reports that say nothing about the CPU instruction set.
_NON_ISA_FEATURES = frozenset({"LLAMAFILE", "OPENMP", "REPACK", "ACCELERATE", "CPU_HBM"})


@dataclass(frozen=True)
class Variant:
    name: str
    needs: frozenset[str]  # /proc/cpuinfo flags the CPU must have
    cmake_on: tuple[str, ...]  # GGML options turned ON; every other x86 option is turned OFF
    features: frozenset[str]  # what llama_print_system_info() must then report, no more

    @property
    def cmake_args(self) -> str:
        if self.name == "native":
            return "-DGGML_NATIVE=ON"
        switches = [f"-DGGML_{opt}={'ON' if opt in self.cmake_on else 'OFF'}" for opt in _X86]
        return " ".join(["-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=OFF", *switches])


# Every x86 instruction-set option of ggml's CMakeLists, so none is left to a default.
_X86 = ("SSE42", "AVX", "AVX_VNNI", "AVX2", "BMI2", "FMA", "F16C", "AVX512", "AVX512_VBMI",
        "AVX512_VNNI", "AVX512_BF16", "AMX_TILE", "AMX_INT8", "AMX_BF16")
_AVX2_ON = ("SSE42", "AVX", "AVX2", "BMI2", "FMA", "F16C")
_AVX2_NEEDS = frozenset({"sse4_2", "ssse3", "avx", "avx2", "fma", "f16c", "bmi2"})
_AVX2_FEATURES = frozenset({"SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2"})

VARIANTS: dict[str, Variant] = {
    "avx2": Variant("avx2", _AVX2_NEEDS, _AVX2_ON, _AVX2_FEATURES),
    "avx512": Variant(
        "avx512",
        _AVX2_NEEDS | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
                       "avx512vbmi", "avx512_vnni", "avx512_bf16"},
        (*_AVX2_ON, "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"),
        _AVX2_FEATURES | {"AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"},
    ),
    # llama.cpp's default (-march=native), built only by the benchmark to compare against.
    "native": Variant("native", frozenset(), (), frozenset()),
}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return frozenset(match.group(1).split()) if match else frozenset()


def choose_variant(flags: frozenset[str]) -> Variant:
    """The fastest safe variant for a CPU with these flags."""
    for name in ("avx512", "avx2"):
        if VARIANTS[name].needs <= flags:
            return VARIANTS[name]
    missing = " ".join(sorted(VARIANTS["avx2"].needs - flags))
    raise LlamaBuildError(
        f"this CPU lacks {missing}: the project's llama.cpp build needs an x86-64 CPU with AVX2, "
        "FMA, F16C and BMI2 (Intel Haswell, AMD Zen or newer)"
    )


def pinned_version() -> str:
    """The llama-cpp-python version pinned in pyproject.toml (the one place it is written)."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in project["project"]["dependencies"]:
        name, _, version = str(requirement).partition("==")
        if name.strip() == PACKAGE:
            return version.strip()
    raise LlamaBuildError(f"pyproject.toml does not pin {PACKAGE}")


def build_key(variant: Variant, version: str) -> str:
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(f"{version} {python} {variant.cmake_args}".encode()).hexdigest()
    return f"{PACKAGE}-{version}-{python}-{variant.name}-{digest[:12]}"


def wheel_cache() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "grounded-rag" / "wheels"


def cached_wheel(variant: Variant, version: str) -> Path | None:
    folder = wheel_cache() / build_key(variant, version)
    wheels = sorted(folder.glob("*.whl"))
    return wheels[0] if wheels else None


def build_wheel(variant: Variant, version: str) -> Path:
    """Compile llama-cpp-python with the variant's flags into our cache (about 5 min once)."""
    if wheel := cached_wheel(variant, version):
        return wheel
    folder = wheel_cache() / build_key(variant, version)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    env = {**os.environ, "CMAKE_ARGS": variant.cmake_args, "FORCE_CMAKE": "1"}
    env.pop("SOURCE_DATE_EPOCH", None)  # it silently flips llama.cpp's native default
    print(f"building {PACKAGE}=={version} ({variant.name}: {variant.cmake_args}); "
          "about 5 minutes on 2 cores…", file=sys.stderr, flush=True)
    try:
        _pip("wheel", "--no-deps", "--no-cache-dir", "--no-binary", PACKAGE, "--wheel-dir",
             str(scratch), f"{PACKAGE}=={version}", env=env)
        shutil.rmtree(folder, ignore_errors=True)
        scratch.rename(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wheel = cached_wheel(variant, version)
    if wheel is None:
        raise LlamaBuildError(f"pip built no wheel into {folder}")
    return wheel


def installed_from() -> str | None:
    """The wheel file the installed llama-cpp-python came from, if pip recorded one."""
    try:
        record = metadata.distribution(PACKAGE).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    url = str(json.loads(record).get("url", "")) if record else ""
    return url.removeprefix("file://") or None


def system_info(python: str = sys.executable, extra_path: Path | None = None) -> str:
    """llama_print_system_info() of the installed (or ``extra_path``) build, read in a child:
    loading the library runs no model code, but a broken one must not take us down."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env,
                            timeout=120)
    if result.returncode != 0:
        raise LlamaBuildError(f"importing llama_cpp failed: {result.stderr.strip()[-300:]}")
    return result.stdout.strip()


def isa_features(info: str) -> frozenset[str]:
    """The instruction-set features of the CPU backend in a system-info line."""
    cpu = next((part for part in info.split("\n") if "CPU :" in part), info)
    pairs = re.findall(r"([A-Z0-9_]+) = ([^|]+?) \|", cpu.split("CPU :", 1)[-1])
    return frozenset(name for name, value in pairs if value.strip() == "1") - _NON_ISA_FEATURES


def problems(variant: Variant, version: str, info: str, source: str | None) -> list[str]:
    """Why the installed build is not the one chosen for this CPU (empty when it is)."""
    found: list[str] = []
    if source is None or build_key(variant, version) not in source:
        found.append(f"{PACKAGE} was not installed from the project's {variant.name} wheel "
                     f"(installed from {source or 'an unknown source, e.g. pip cache'})")
    features = isa_features(info)
    if features != variant.features:
        extra = " ".join(sorted(features - variant.features)) or "none"
        absent = " ".join(sorted(variant.features - features)) or "none"
        found.append(f"llama.cpp reports CPU features that differ from the {variant.name} "
                     f"variant (unexpected: {extra}; missing: {absent})")
    return found


def ensure_installed(force: bool = False) -> Variant:
    """Build (or reuse) and install the wheel for this CPU; verify what got installed.

    ``force`` throws the cached wheel away and compiles it again."""
    variant, version = choose_variant(cpu_flags()), pinned_version()
    if force:
        shutil.rmtree(wheel_cache() / build_key(variant, version), ignore_errors=True)
    elif not _installed_problems(variant, version):
        print(f"{PACKAGE} {version}: {variant.name} build already installed", file=sys.stderr)
        return variant
    for attempt in (1, 2):
        wheel = build_wheel(variant, version)
        # First its dependencies (typing-extensions, numpy, ...: the import check needs them
        # before the project's own install step runs), then the wheel itself over whatever
        # llama-cpp-python build was there.
        _pip("install", "--no-cache-dir", "--quiet", str(wheel))
        _pip("install", "--no-deps", "--force-reinstall", "--no-cache-dir", "--quiet", str(wheel))
        found = _installed_problems(variant, version)
        if not found:
            print(f"{PACKAGE} {version}: installed the {variant.name} build ({wheel.name})",
                  file=sys.stderr)
            return variant
        if attempt == 1:  # a stale or damaged cached wheel: build it afresh once
            shutil.rmtree(wheel.parent, ignore_errors=True)
    raise LlamaBuildError("; ".join(found))


def _installed_problems(variant: Variant, version: str) -> list[str]:
    try:
        installed = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return [f"{PACKAGE} is not installed"]
    if installed != version:
        return [f"{PACKAGE} {installed} is installed, {version} is pinned"]
    try:
        info = system_info()
    except (LlamaBuildError, subprocess.TimeoutExpired) as exc:
        return [str(exc)]
    return problems(variant, version, info, installed_from())


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    if subprocess.run(command, env=env).returncode != 0:
        raise LlamaBuildError(f"`{' '.join(command)}` failed (see its output above)")


def main(argv: list[str]) -> int:
    try:
        return _run(argv)
    except LlamaBuildError as exc:
        print(f"llama_build: error: {exc}", file=sys.stderr)
        return 2


def _run(argv: list[str]) -> int:
    action = argv[0] if argv else "show"
    if action == "install":
        ensure_installed(force="--force" in argv)
    elif action == "check":
        variant, version = choose_variant(cpu_flags()), pinned_version()
        if found := _installed_problems(variant, version):
            raise LlamaBuildError("; ".join(found) + ": run `make install`")
        print(f"{PACKAGE} {version}: the {variant.name} build is installed", file=sys.stderr)
    elif action == "wheel" and len(argv) == 2 and argv[1] in VARIANTS:
        print(build_wheel(VARIANTS[argv[1]], pinned_version()))
    elif action == "show":
        variant = choose_variant(cpu_flags())
        print(json.dumps({"variant": variant.name, "cmake_args": variant.cmake_args,
                          "key": build_key(variant, pinned_version())}, indent=2))
    else:
        raise LlamaBuildError("usage: python -m rag.llm.llama_build install [--force]|check|show|"
                              f"wheel {{{','.join(VARIANTS)}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
