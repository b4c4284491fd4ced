"""Run in a fresh process by ``bench.scalecold`` (``python -m bench scale``): the service's cold
start, then query latency.

Prints one JSON object: the split of spawn → first text-search answer, peak RSS, search latency
over the probe vectors and the ids found (the parent computes recall).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from bench.children.laps import Laps

QUERY = "a red car in the city"
FILL_TIMEOUT_S = 600.0


class _LoadTimes(logging.Handler):
    """The split ``artefacts.loader.load_build`` logs: MB fetched, fetch seconds, open seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.values: tuple[Any, ...] = ()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("build ") and "fetched" in record.getMessage():
            self.values = tuple(record.args or ())


def main() -> None:
    laps = Laps("interpreter_s")
    lap = laps.lap
    from image_search.serve.api import create_app
    from image_search.serve.service import get_service

    create_app()
    lap("imports_s")
    load_times = _LoadTimes()
    logger = logging.getLogger("image_search.artefacts.loader")
    logger.setLevel(logging.INFO)
    logger.addHandler(load_times)
    service = get_service()
    service.embedder.load()
    lap("model_load_s")
    loaded = service.current()
    lap("index_s")
    hits = service.search_text(QUERY, k=10).hits
    assert len(hits) == 10
    lap("first_query_s")
    cold_start = laps.since_spawn()
    steps = {name: round(seconds, 3) for name, seconds in laps.seconds.items()}
    _, megabytes, fetch_s, open_s = load_times.values
    steps["pointer_read_s"] = round(steps["index_s"] - fetch_s - open_s, 3)
    steps["fetch_s"], steps["open_s"] = round(fetch_s, 3), round(open_s, 3)
    figures = _queries(loaded, cold_start=cold_start, steps=steps, fetched_mb=megabytes)
    # The runtime the service chose for the text query (OnnxEmbedder or ClipEmbedder).
    figures["embedder"] = type(service.embedder).__name__
    print(json.dumps(figures))


def _queries(
    loaded: Any, *, cold_start: float, steps: dict[str, float], fetched_mb: float
) -> dict[str, Any]:
    import numpy as np

    from bench.report.memory import peak_rss_bytes
    from image_search.artefacts.manifest import INDEX_FILE

    probes = np.load(os.environ["BENCH_PROBES"])
    cold = [_timed(loaded.index, probe)[0] for probe in probes]
    fill_s = _wait_for_rerank(loaded.base.index)
    timed = [_timed(loaded.index, probe) for probe in probes]
    latencies = np.array([ms for ms, _ in timed])
    cache = os.environ["IMAGE_SEARCH_INDEX_CACHE_DIR"]
    return {
        "cold_start_s": round(cold_start, 3),
        **steps,
        "fetched_mb": round(fetched_mb, 1),
        "rss_mb": round(peak_rss_bytes() / 2**20, 1),
        "search_p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "search_p95_ms": round(float(np.percentile(latencies, 95)), 3),
        "cold_search_p50_ms": round(float(np.percentile(cold, 50)), 3),
        "rerank_fill_s": fill_s,
        "index_bytes": os.path.getsize(os.path.join(cache, loaded.metadata.build_id, INDEX_FILE)),
        "rerank_bytes": _rerank_bytes(loaded.base.index),
        "ids": [ids for _, ids in timed],
    }


def _timed(index: Any, probe: Any) -> tuple[float, list[int]]:
    started = time.perf_counter()
    hits = index.search(probe, k=10)
    return (time.perf_counter() - started) * 1000, hits.ids + [-1] * (10 - len(hits.ids))


def _rerank_bytes(index: Any) -> int:
    """The size of ivf-pq's re-rank codes (0 for other types)."""
    rerank = getattr(index, "rerank", None)
    return 0 if rerank is None else int(rerank.codes.nbytes)


def _wait_for_rerank(index: Any) -> float | None:
    """Seconds until ivf-pq's re-rank codes are all local (None for other types)."""
    rerank = getattr(index, "rerank", None)  # ivf-pq only: its codes arrive after the start
    if rerank is None:
        return None
    started = time.perf_counter()
    rerank.filled.wait(FILL_TIMEOUT_S)
    return round(time.perf_counter() - started, 2)


if __name__ == "__main__":
    main()
