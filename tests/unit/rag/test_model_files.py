import hashlib
import os
from pathlib import Path

import pytest

from rag.errors import ModelIntegrityError, ModelNotFoundError
from rag.llm import model_files

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> model_files.ModelSpec:
    """A three-part model made of real files, assembled by the real code."""
    folder = tmp_path / "packages"
    folder.mkdir()
    for number, data in enumerate(PARTS, start=1):
        (folder / f"part{number:02d}.bin").write_bytes(data)
    whole = b"".join(PARTS)
    fake = model_files.ModelSpec(
        name="tiny", filename="tiny.gguf", size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(), package_prefix="tiny_part",
        pip_prefix="tiny-part", version="1.0", parts=len(PARTS),
    )
    monkeypatch.setattr(
        model_files.ModelSpec, "part_path", lambda self, n: folder / f"part{n:02d}.bin"
    )
    return fake


def test_install_assembles_and_verifies(spec: model_files.ModelSpec, tmp_path: Path) -> None:
    path = model_files.install(spec, tmp_path / "models")
    assert path.read_bytes() == b"".join(PARTS)
    assert model_files.model_file(spec, tmp_path / "models") == path
    assert not list((tmp_path / "models").glob("*.part")), "no temporary file is left behind"


def test_sha256_mismatch_is_caught_and_never_loaded(
    spec: model_files.ModelSpec, tmp_path: Path
) -> None:
    path = model_files.install(spec, tmp_path / "models")
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # a changed file has a changed mtime: the stamp no longer matches
    with pytest.raises(ModelIntegrityError, match="corrupt or incomplete"):
        model_files.model_file(spec, tmp_path / "models")


def test_partial_file_is_rebuilt(spec: model_files.ModelSpec, tmp_path: Path) -> None:
    path = model_files.install(spec, tmp_path / "models")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelIntegrityError):
        model_files.model_file(spec, tmp_path / "models")
    assert model_files.install(spec, tmp_path / "models").read_bytes() == b"".join(PARTS)


def test_wrong_parts_never_become_the_model(spec: model_files.ModelSpec, tmp_path: Path) -> None:
    bad = model_files.ModelSpec(**{**spec.__dict__, "sha256": "0" * 64})
    with pytest.raises(ModelIntegrityError):
        model_files.install(bad, tmp_path / "models")
    assert not (tmp_path / "models" / spec.filename).exists()


def test_missing_model_names_the_command_that_installs_it(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="make install"):
        model_files.model_file(model_files.KNOWN_MODELS["small"], tmp_path)
