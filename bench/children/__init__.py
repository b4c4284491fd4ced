"""Entry points run in a fresh process (``python -m bench.children.<name>``, cwd = the repository).

Each prints one JSON line for its parent. They import only the standard library at module level,
so what a child imports afterwards is what it measures.
"""
