"""bench's imports, read from its source: no circle, and every arrow runs down its layers."""

from __future__ import annotations

import ast

from tests.support.paths import ROOT

BENCH = ROOT / "bench"
# Lowest first: a module may import from its own layer or from one below, never from one above.
LAYERS = (
    ("bench.paths", "bench.report"),
    ("bench.fixtures",),
    ("bench.children",),
    ("bench.sections",),
    ("bench",),  # the commands: __main__, scalecold (bench scale), pqtune, load
)


def bench_imports() -> dict[str, set[str]]:
    """Each bench module and the bench modules it imports anywhere in it (in functions and under
    TYPE_CHECKING too: mypy and readers follow those as well)."""
    names = {_name(path): path for path in BENCH.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # ``from bench.fixtures import data`` imports the module bench.fixtures.data
                found.update(
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
                    for a in node.names
                )
        graph[name] = {module for module in found if module in names and module != name}
    return graph


def _name(path: object) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)  # type: ignore[attr-defined]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of imports (its modules, the first repeated at the end), or [] if none."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str]:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return []
        for imported in sorted(graph[module]):
            if found := visit(imported, [*path, module]):
                return found
        done.add(module)
        return []

    for module in sorted(graph):
        if found := visit(module, []):
            return found
    return []


def layer(module: str) -> int:
    matches = [
        (len(prefix), at)
        for at, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


def test_no_bench_module_imports_itself_through_others() -> None:
    graph = bench_imports()
    assert len(graph) > 20 and "bench.sections.shared" in graph["bench.sections.build"]
    assert cycle(graph) == [], " -> ".join(cycle(graph))


def test_bench_imports_run_down_from_the_commands_to_the_report() -> None:
    upward = [
        f"{module} -> {imported}"
        for module, imports in bench_imports().items()
        for imported in imports
        if layer(imported) > layer(module)
    ]
    assert upward == []


def test_the_cycle_finder_finds_a_circle_of_three() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycle(graph) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) == []
