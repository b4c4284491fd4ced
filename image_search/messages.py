"""One-line error messages for the command line: ``error: …`` on stderr and exit code 2."""

from __future__ import annotations

import sys

from pydantic import ValidationError


def settings_problem(exc: ValidationError, *, flags: bool = True) -> str:
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "settings"
    if first["type"] == "missing":
        hint = f" (or pass --{name})" if flags else ""
        return f"IMAGE_SEARCH_{name.upper()} is not set{hint}"
    reason = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for our own checks
    return f"invalid IMAGE_SEARCH_{name.upper()}: {reason}"


def fail(reason: str) -> int:
    print(f"error: {reason}", file=sys.stderr, flush=True)
    return 2
