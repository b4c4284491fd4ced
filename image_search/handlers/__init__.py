"""The Lambda functions' entry points, one module per kind of function: ``api`` (the search API)
and ``build`` (the index build's states). handler.py at the root re-exports them under the names
template.yaml gives."""
