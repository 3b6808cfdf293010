"""The llama.cpp build and its self-test: the project's flags, `rag doctor`, and a crashing build
reported by doctor, ask and serve instead of killing them."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rag.errors import LlamaRuntimeError
from rag.llm import llama_build, model_files, selftest
from rag.settings import Settings
from tests.conftest import free_port

SAPPHIRE_RAPIDS = frozenset(
    "fpu sse4_2 ssse3 avx avx2 fma f16c bmi2 avx512f avx512cd avx512vl avx512dq avx512bw "
    "avx512vbmi avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 amx_bf16".split()
)
HASWELL = frozenset("fpu sse4_2 ssse3 avx avx2 fma f16c bmi2".split())
SKYLAKE_X = HASWELL | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}


def test_an_amx_cpu_gets_a_build_without_amx() -> None:
    variant = llama_build.choose_variant(SAPPHIRE_RAPIDS)
    assert variant.name == "avx512"
    assert "-DGGML_NATIVE=OFF" in variant.cmake_args
    for amx in ("AMX_TILE", "AMX_INT8", "AMX_BF16"):
        assert f"-DGGML_{amx}=OFF" in variant.cmake_args
    assert "=ON" in variant.cmake_args and "AMX" not in " ".join(variant.features)


@pytest.mark.parametrize(("flags", "expected"), [(HASWELL, "avx2"), (SKYLAKE_X, "avx2")])
def test_cpus_without_every_avx512_extension_get_the_avx2_baseline(
    flags: frozenset[str], expected: str
) -> None:
    variant = llama_build.choose_variant(flags)
    assert variant.name == expected
    assert "-DGGML_AVX512=OFF" in variant.cmake_args


def test_a_cpu_without_avx2_is_told_so() -> None:
    with pytest.raises(llama_build.LlamaBuildError, match="lacks avx2"):
        llama_build.choose_variant(frozenset("fpu sse4_2 ssse3 avx".split()))


def test_build_keys_differ_by_flags() -> None:
    keys = {llama_build.build_key(v, "0.3.36") for v in llama_build.VARIANTS.values()}
    assert len(keys) == len(llama_build.VARIANTS)


def test_system_info_is_parsed_into_instruction_set_features() -> None:
    info = ("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | "
            "REPACK = 1 | ")
    assert llama_build.isa_features(info) == {"SSE3", "AVX", "AVX2", "AMX_INT8"}


def test_the_installed_llama_cpp_was_built_with_the_projects_flags() -> None:
    variant = llama_build.choose_variant(llama_build.cpu_flags())
    info = llama_build.system_info()
    assert "AMX" not in info
    assert llama_build.isa_features(info) == variant.features, info
    source = llama_build.installed_from()
    assert source is not None and llama_build.build_key(variant, "0.3.36") in source
    assert llama_build.pinned_version() == "0.3.36"


@pytest.mark.llm
def test_doctor_runs_each_installed_model_in_a_child(settings: Settings) -> None:
    result = _rag(["doctor", "--json"], settings)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["build_warnings"] == []
    tested = [m["selftest"] for m in report["models"] if m["selftest"]]
    assert tested and all(t["ok"] and t["decode_tokens_per_s"] > 0 for t in tested)
    assert all("AMX" not in t["system_info"] for t in tested)


@pytest.fixture(scope="module")
def sigill_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A llama_cpp package that dies by SIGILL as soon as it is used, as the AMX build did."""
    root = tmp_path_factory.mktemp("broken-build")
    package = root / "llama_cpp"
    package.mkdir()
    (package / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    return root


def _rag(args: list[str], settings: Settings,
         broken: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], env=_env(settings, broken),
                          capture_output=True, text=True, timeout=300)


def _env(settings: Settings, broken: Path | None) -> dict[str, str]:
    env = {**os.environ, "RAG_INDEX_DIR": str(settings.index_dir), "RAG_LLM": "small",
           "RAG_MODEL_DIR": str(settings.model_dir)}
    if broken is not None:
        env["PYTHONPATH"] = str(broken)
    return env


def _one_line_diagnosis(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("rag: error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "Illegal instruction" not in stderr
    assert "SIGILL" in lines[0] and "rag.llm.llama_build install --force" in lines[0]
    return lines[0]


def test_doctor_reports_a_crashing_build_in_one_line(settings: Settings,
                                                     sigill_build: Path) -> None:
    result = _rag(["doctor"], settings, sigill_build)
    assert result.returncode == 2
    _one_line_diagnosis(result.stderr)
    assert "self-test FAILED" in result.stdout


def test_ask_reports_a_crashing_build_instead_of_dying(settings: Settings, sigill_build: Path,
                                                       article_index: object) -> None:
    result = _rag(["ask", "Who is Taro Kono?"], settings, sigill_build)
    assert result.returncode == 2
    _one_line_diagnosis(result.stderr)


def test_serve_reports_a_crashing_build_on_readyz(settings: Settings, sigill_build: Path,
                                                  article_index: object) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
                               env=_env(settings, sigill_build), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        body: dict[str, object] = {}
        deadline = time.time() + 180
        while time.time() < deadline and body.get("status") != "failed":
            assert process.poll() is None, "the service died instead of reporting the crash"
            try:
                body = httpx.get(f"{url}/readyz", timeout=2).json()
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert body.get("status") == "failed"
        assert "SIGILL" in str(body["error"]) and "--force" in str(body["error"])
        asked = httpx.post(f"{url}/v1/ask", json={"question": "Who is Taro Kono?"}, timeout=30)
        assert asked.status_code == 503 and "SIGILL" in asked.json()["error"]["message"]
        assert process.poll() is None
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "SIGILL" in stderr


def test_a_passing_verdict_is_cached_per_build(settings: Settings, tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"not a model")
    key = {"build": selftest.build_id(), "model": selftest._file_key(model)}
    (tmp_path / "model.gguf.selftest").write_text(json.dumps({"key": key}))
    selftest.ensure_runs(model, "cached", 1)  # no child: the cached verdict matches
    model.write_bytes(b"another file, another verdict")
    with pytest.raises(LlamaRuntimeError, match="self-test of cached failed"):
        selftest.ensure_runs(model, "cached", 1)


def test_the_installed_small_model_matches_its_published_checksum(settings: Settings) -> None:
    spec = model_files.KNOWN_MODELS["small"]
    path = settings.model_dir / spec.filename
    model_files.verify(path, spec)
