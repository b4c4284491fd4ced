"""Run in a fresh process by ``bench.sections.coldstart``: the service's start-up, step by step.

Prints one JSON object of seconds per step. The steps are what ``handler.py`` does at import
(Lambda's init phase) and then the first request, split so each can be held against its floor.
"""

from __future__ import annotations

import json
import os
import time

from bench.children.laps import Laps


def main() -> None:
    laps = Laps("interpreter start")
    steps, lap = laps.seconds, laps.lap
    if os.environ.get("IMAGE_SEARCH_RUNTIME") == "torch":
        # transformers imports CLIP's classes lazily, inside from_pretrained; importing them here
        # puts that cost under "imports", where the floor (bench.sections.coldstart.IMPORTS)
        # counts it too.
        from transformers import CLIPModel, CLIPProcessor  # noqa: F401

        import image_search.model.torch_clip  # noqa: F401  (torch, transformers)
    else:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        import image_search.model.onnx_clip  # noqa: F401
    from image_search.serve.api import create_app
    from image_search.serve.service import get_service
    from image_search.storage import s3

    create_app()
    lap("imports")
    service = get_service()
    service.embedder.load()
    lap("model load")
    fetched = 0.0
    original = s3.get_bytes

    def timed_get(*args: object, **kwargs: object) -> bytes:
        nonlocal fetched
        begin = time.perf_counter()
        try:
            return original(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            fetched += time.perf_counter() - begin

    s3.get_bytes = timed_get  # type: ignore[assignment]
    begin = time.perf_counter()
    assert service.client is not None  # boto3 loads its service model: part of fetching
    fetched += time.perf_counter() - begin
    service.current()
    s3.get_bytes = original  # type: ignore[assignment]
    lap("index fetch+load")
    steps["index fetch"] = fetched
    steps["index load"] = steps.pop("index fetch+load") - fetched
    hits = service.search_text("a red car in the city", k=10).hits
    assert len(hits) == 10
    lap("first query")
    print(json.dumps(steps))


if __name__ == "__main__":
    main()
