"""The package's layers, read from its imports: every arrow runs down, none back up or sideways.

docs/architecture.md draws the same order; a new module joins the layer of its package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

# Lowest first. A module may import its own package and any package in a lower layer.
LAYERS: list[set[str]] = [
    {"", "config", "errors", "messages", "files"},  # "" is image_search/__init__.py
    {"storage"},  # S3 only
    {"model"},  # embedders; model/source.py fetches a model from S3
    {"index"},  # FAISS only
    {"artefacts"},  # the published contract: imports index/ and storage/
    {"observe"},  # logs and metrics of requests and builds
    {"build", "serve"},
    {"ingest"},  # S3 events into segments: the build's fetch and embed path, between builds
    {"demo"},
    {"cli", "handlers"},
    {"__main__"},
]
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def package_of(module: str) -> str:
    """``image_search.index.kinds`` → ``index``; ``image_search`` itself → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> list[tuple[str, int]]:
    """The image_search modules ``path`` imports (top-level or inside functions), with lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "image_search":  # from image_search import build, __version__
                found += [(f"image_search.{alias.name}", node.lineno) for alias in node.names]
            elif node.module.startswith("image_search."):
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [
                (a.name, node.lineno) for a in node.names if a.name.startswith("image_search")
            ]
    return found


def modules() -> list[Path]:
    return sorted((ROOT / "image_search").rglob("*.py"))


def own_package(path: Path) -> str:
    parts = path.relative_to(ROOT / "image_search").with_suffix("").parts
    return parts[0] if len(parts) > 1 else ("" if parts[0] == "__init__" else parts[0])


def upward_arrows() -> list[str]:
    arrows = []
    for path in modules():
        source = own_package(path)
        for module, line in imports_of(path):
            target = package_of(module)
            if target == "__version__":
                target = ""
            if target != source and LEVEL[target] >= LEVEL[source]:
                where = path.relative_to(ROOT)
                arrows.append(f"{where}:{line}: {source or 'image_search'} imports {module}")
    return arrows


def test_every_package_has_a_layer() -> None:
    unplaced = {own_package(path) for path in modules()} - set(LEVEL)
    assert unplaced == set(), f"add these packages to LAYERS: {sorted(unplaced)}"


def test_imports_only_run_down_the_layers() -> None:
    assert upward_arrows() == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("index", {"storage", "artefacts"}), ("storage", {"index", "artefacts", "model"})],
)
def test_the_index_and_storage_know_nothing_of_each_other(package: str, forbidden: set) -> None:
    for path in (ROOT / "image_search" / package).rglob("*.py"):
        imported = {package_of(module) for module, _ in imports_of(path)}
        assert imported.isdisjoint(forbidden), path


def test_the_check_sees_an_upward_arrow(tmp_path: Path) -> None:
    """The reader of imports is not blind: a storage module importing artefacts is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from image_search.artefacts.location import IndexLocation\n")
    assert [package_of(m) for m, _ in imports_of(bad)] == ["artefacts"]
    assert LEVEL["artefacts"] > LEVEL["storage"]
