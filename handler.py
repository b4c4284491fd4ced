"""The entry points template.yaml and uvicorn name: ``handler.search`` (the API behind API
Gateway), ``handler.plan``, ``handler.embed_shard`` and ``handler.merge`` (the index build's
state machine), ``handler.ingest`` (S3's change events from SQS), and ``handler:app`` for uvicorn.

Each is imported from ``image_search.handlers`` when first asked for. Lambda's runtime imports
this module and looks the configured name up during the function's init phase, so the search
function builds its app and warms its model and index then, and a build function never builds
the app at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from image_search.handlers.api import app, search
    from image_search.handlers.build import embed_shard, merge, plan
    from image_search.handlers.ingest import ingest

MODULES = {
    "app": "image_search.handlers.api",
    "search": "image_search.handlers.api",
    "plan": "image_search.handlers.build",
    "embed_shard": "image_search.handlers.build",
    "merge": "image_search.handlers.build",
    "ingest": "image_search.handlers.ingest",
}
__all__ = ["app", "embed_shard", "ingest", "merge", "plan", "search"]


def __getattr__(name: str) -> Any:
    if name not in MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(MODULES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *MODULES])
