"""The sections' table: every section module is in it once, and every row names a module that
has ``run(shared)``."""

from __future__ import annotations

import ast

from bench.sections import SECTIONS
from tests.support.paths import ROOT

FOLDER = ROOT / "bench" / "sections"
NOT_SECTIONS = {"__init__", "shared", "sizes"}  # what the sections use


def test_every_section_module_is_in_the_table_and_every_row_has_a_module() -> None:
    modules = {path.stem for path in FOLDER.glob("*.py")} - NOT_SECTIONS
    assert set(SECTIONS) == modules
    assert all(name == section.name for name, section in SECTIONS.items())


def test_every_section_module_has_run_taking_the_shared_context() -> None:
    for name in SECTIONS:
        tree = ast.parse((FOLDER / f"{name}.py").read_text())
        (run,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
        assert [arg.arg for arg in run.args.args] == ["shared"], name
