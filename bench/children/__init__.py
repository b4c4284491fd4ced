"""Entry points run in a fresh process (``python -m bench.children.<name>``, cwd = the repository).

Each prints one JSON line for its parent. The ones that time a start-up (coldstart, runtime,
scale) import only the standard library before their clock starts, so what they import after is
what they measure.
"""
