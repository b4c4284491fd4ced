"""(11) A combined query against a single text query, through HTTP on the same index.

The combined query is what the page's "more like this / less like this" sends: a text and an
indexed image to look for, a text to move away from (``POST /image_search/query``); the single
query one text (``POST /image_search/search``). Both with new words every time, so the text
cache never answers and each text is embedded. Rounds alternate the two so drift in the
machine's load hits both alike. No target: the ratio says what a combination costs (mostly one
more text to embed).
"""

from __future__ import annotations

import logging
from itertools import count
from typing import TYPE_CHECKING

import httpx

from bench.fixtures.server import service_env, uvicorn_server
from bench.report.stats import Rounds, Row, percentile, timed

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

K = 10
WORDS = ("a red car at night", "dogs on a beach", "snowy mountains", "fruit on a table")


def run(shared: Shared) -> None:
    published = shared.published[-1]
    embedder = shared.embedders["onnx"]
    LOG.info("(11) combined query against one text: %d vectors", published.count)
    cache = shared.work / f"combined-{published.bucket}"
    env = service_env(bucket=published.bucket, model=embedder.source, cache=cache)
    env["IMAGE_SEARCH_RUNTIME"] = "onnx"
    turns = count()
    sizes = shared.sizes
    with uvicorn_server(env) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        liked = client.post("/image_search/search", json={"query": WORDS[0], "k": 1})
        liked_key = _ok(liked)[0]["key"]

        def text() -> str:
            turn = next(turns)
            return f"{WORDS[turn % len(WORDS)]} ({turn})"

        def single() -> None:
            _ok(client.post("/image_search/search", json={"query": text(), "k": K, "folder": "*"}))

        def combined() -> None:
            body = {
                "positive": [{"text": text()}, {"key": liked_key}],
                "negative": [{"text": text(), "weight": 0.5}],
                "k": K,
            }
            _ok(client.post("/image_search/query", json=body))

        # Warm: the first of each loads what it needs.
        single()
        combined()
        rounds: dict[str, list[float]] = {"single": [], "combined": []}
        for _ in range(sizes.search_rounds):
            for name, request in (("single", single), ("combined", combined)):
                samples = [timed(request) * 1000 for _ in range(sizes.text_requests)]
                rounds[name].append(percentile(samples, 50))
    group = f"combined query, {published.count // 1000}k {published.index_type} index, onnx"
    one, both = Rounds(rounds["single"]), Rounds(rounds["combined"])
    shared.report.add(Row.of(group, "one text (/search) HTTP p50", one, "ms"))
    shared.report.add(
        Row.of(
            group,
            "2 texts + 1 image, one negative (/query) HTTP p50",
            both,
            "ms",
            floor=one.median,
            ratio=both.median / one.median,
            note="floor = one text's p50",
        )
    )


def _ok(response: httpx.Response) -> list[dict[str, object]]:
    response.raise_for_status()
    body = response.json()
    hits: list[dict[str, object]] = body["results"] if isinstance(body, dict) else body
    assert hits, response.text
    return hits
