"""Run in a fresh process by ``bench.sections.runtimes``: one runtime's cold start, step by step.

``python -m bench.children.runtime RUNTIME SOURCE CACHE`` prints the seconds of each step and
the peak memory as JSON. Nothing but the standard library is imported before the clock starts,
so "imports" holds everything the runtime needs (numpy, PIL and the package included).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.report.memory import peak_rss_bytes

QUERY = "a red car in the city"


def main(runtime: str, source: str, cache: str) -> None:
    started = time.perf_counter()
    if runtime == "torch":
        # transformers loads CLIP's classes lazily, inside from_pretrained: count them here.
        from transformers import CLIPModel, CLIPProcessor  # noqa: F401

        from image_search.model.torch_clip import ClipEmbedder as Embedder
    else:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        from image_search.model.onnx_clip import OnnxEmbedder as Embedder  # type: ignore[assignment]
    imported = time.perf_counter()
    embedder = Embedder(source=source, cache_dir=Path(cache)).load()
    loaded = time.perf_counter()
    embedder.embed_texts([QUERY])
    done = time.perf_counter()
    # VmHWM, not getrusage's ru_maxrss: Linux carries that over from the parent across exec.
    peak_mb = peak_rss_bytes() / 2**20
    steps = {"imports": imported - started, "model load": loaded - imported}
    print(json.dumps({**steps, "first query": done - loaded, "peak RSS": peak_mb}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
