"""Benchmarks: the product's speed against its compute floor (``python -m bench``, see README)."""
