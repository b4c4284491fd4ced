"""Where the repository is: child processes run there, so ``python -m bench.…`` and
``handler:app`` resolve whichever folder the parent was started from."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
