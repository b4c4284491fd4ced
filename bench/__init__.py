"""Benchmarks: the product's speed against its compute floor (``python -m bench``, see README).

``sections/`` (one module a section, listed in ``sections/__init__.py``), ``children/`` (what runs
in a fresh process), ``fixtures/`` (data, photos, the model, the S3 servers, published builds and
the HTTP server), ``report/`` (timing, memory, the table); beside them the commands: ``scalecold``
(``python -m bench scale``), ``pqtune`` and ``load`` (``make load``). Imports run that way down,
never back up (tests/bench/test_imports.py).
"""
