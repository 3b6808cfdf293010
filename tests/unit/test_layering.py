"""The import graph follows the layering written once in docs/design.md (no model)."""

import ast
import re
from pathlib import Path

import pytest

from rag.settings import PROJECT_ROOT

PROJECT = PROJECT_ROOT
PACKAGES = ("rag", "index_build", "eval", "bench")


def _layers() -> dict[str, int]:
    text = (PROJECT / "docs" / "design.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- layering -->(.*?)<!-- /layering -->", text, re.S)
    assert block, "docs/design.md has no layering block"
    layers = {}
    for line in block.group(1).strip().splitlines():
        number, names = line.split(".", 1)
        for name in names.split():
            layers[name] = int(number)
    return layers


def _unit(module: str, layers: dict[str, int]) -> str | None:
    """The layering entry a module belongs to: its longest listed prefix."""
    parts = module.split(".")
    for size in range(len(parts), 0, -1):
        if ".".join(parts[:size]) in layers:
            return ".".join(parts[:size])
    return None


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (PROJECT / package).rglob("*.py"):
            parts = path.relative_to(PROJECT).with_suffix("").parts
            found[".".join(p for p in parts if p != "__init__")] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: resolve against this module's package
                base = ".".join([*module.split(".")[:-node.level], node.module])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def test_every_module_has_a_layer() -> None:
    layers = _layers()
    unplaced = [m for m in _modules() if _unit(m, layers) is None and m not in PACKAGES]
    assert not unplaced, f"not in the layering of docs/design.md: {unplaced}"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_go_down_the_layers(module: str) -> None:
    layers = _layers()
    own = _unit(module, layers)
    if own is None:  # a package's own __init__
        return
    for imported in _imports(_modules()[module], module):
        target = _unit(imported, layers)
        if target is None or target == own:
            continue
        assert layers[target] < layers[own], (
            f"{module} (layer {layers[own]}, {own}) imports {imported} (layer {layers[target]})")


def test_rag_never_imports_eval_bench_or_tests() -> None:
    for module, path in _modules().items():
        if module.split(".")[0] == "rag":
            bad = {m for m in _imports(path, module) if m.split(".")[0] in {"eval", "bench"}}
            assert not bad, (module, bad)
            assert "import tests" not in path.read_text() and "from tests" not in path.read_text()


# What a test may import of tests/: the shared helpers, never another test module.
TEST_HELPERS = {"tests.conftest", "tests.documents", "tests.servers", "tests.gold_review",
                "tests.fake_engine"}


def _imported(path: Path) -> set[str]:
    """Every module a file imports, by its full dotted name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_bench_and_tests_never_import_each_other() -> None:
    """Both stand on the packages (eval.sample_files holds the documents both write); a test
    imports the shared helpers, never another test module."""
    for path in (PROJECT / "bench").rglob("*.py"):
        assert not {n for n in _imported(path) if n.split(".")[0] == "tests"}, path
    for path in (PROJECT / "tests").rglob("*.py"):
        imported = _imported(path)
        assert not {n for n in imported if n.split(".")[0] == "bench"}, path
        assert {n for n in imported if n.split(".")[0] == "tests"} <= TEST_HELPERS, path
