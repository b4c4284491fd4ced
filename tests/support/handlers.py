"""handler.py's entry points as a fresh Lambda function imports them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any, Any], dict[str, Any]]


def entry_point(name: str) -> Handler:
    """``handler.<name>``, its module in ``image_search.handlers`` imported anew, so its app,
    logging and service come from the current environment (as in a new function's init)."""
    import handler

    importlib.reload(importlib.import_module(handler.MODULES[name]))
    found: Handler = getattr(handler, name)
    return found
