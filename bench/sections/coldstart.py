"""(4) Cold start: a fresh server process until its first successful search answer.

The total is measured on the real thing (``uvicorn handler:app`` with an empty index cache,
as a new Lambda has); ``bench.children.coldstart`` repeats the start-up step by step to show
where the time goes. Each step's floor is its bare cost measured on its own: interpreter start,
the imports alone, ``from_pretrained`` in a warm process, one S3 GET of the artefacts, FAISS
deserialisation, and a warm query.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from bench.fixtures.publish import Published
from bench.fixtures.server import QUERY, first_answer, service_env
from bench.paths import ROOT
from bench.report.stats import Report, Rounds, Row, timed
from image_search.artefacts.loader import read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import Metadata
from image_search.storage import s3

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

RATIO_TARGET = 1.2
# Lambda's init phase is capped at 10 s; without torch's imports the issue asks for 2 s.
ABSOLUTE_TARGET_S = {"torch": 10.0, "onnx": 2.0}
# What start-up must import at the least, per runtime: transformers' CLIP classes load lazily on
# first use, so they are named.
IMPORTS = {
    "torch": (
        "import torch, faiss, fastapi, boto3, PIL, uvicorn; "
        "from transformers import CLIPModel, CLIPProcessor, AutoModel, AutoProcessor"
    ),
    "onnx": "import onnxruntime, tokenizers, faiss, fastapi, boto3, PIL, uvicorn",
}


def run(shared: Shared) -> None:
    """Each runtime's cold start over the largest published index."""
    for runtime, embedder in shared.embedders.items():
        LOG.info("(4) cold start, %s", runtime)
        _runtime(
            shared.report,
            embedder=embedder,
            published=shared.published[-1],
            rounds=shared.sizes.cold_rounds,
            runtime=runtime,
        )


def _runtime(
    report: Report, *, embedder: Any, published: Published, rounds: int, runtime: str
) -> None:
    group = f"cold start, {published.count // 1000}k {published.index_type} index, {runtime}"
    totals: list[float] = []
    steps: list[dict[str, float]] = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as cache:
            totals.append(first_answer(_env(embedder, published, Path(cache), runtime)))
        with tempfile.TemporaryDirectory() as cache:
            steps.append(_steps(_env(embedder, published, Path(cache), runtime)))
    floors = _floors(embedder, published, rounds=rounds, runtime=runtime)
    for name, floor in floors.items():
        measured = Rounds([step[name] for step in steps])
        report.add(
            Row.of(group, f"{name}", measured, "s", floor=floor, ratio=measured.median / floor)
        )
    total = Rounds(totals)
    floor = sum(floors.values())
    ratio = total.median / floor
    limit = ABSOLUTE_TARGET_S[runtime]
    report.add(
        Row.of(
            group,
            "spawn → first search answer",
            total,
            "s",
            floor=floor,
            ratio=ratio,
            target=f"ratio ≤ {RATIO_TARGET}, ≤ {limit:g} s",
            ok=ratio <= RATIO_TARGET and total.median <= limit,
        )
    )


def _env(embedder: Any, published: Published, cache: Path, runtime: str) -> dict[str, str]:
    """The server's environment with an empty cache, as a new Lambda has."""
    env = service_env(bucket=published.bucket, model=embedder.source, cache=cache)
    env["IMAGE_SEARCH_RUNTIME"] = runtime
    return env


def _steps(env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.children.coldstart"],
        cwd=ROOT,
        env={**env, "BENCH_SPAWNED": repr(time.time())},
        capture_output=True,
        text=True,
        check=True,
    )
    steps: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return steps


def _floors(embedder: Any, published: Published, *, rounds: int, runtime: str) -> dict[str, float]:
    client = s3.make_client()
    pointer = read_pointer(IndexLocation(client, published.bucket, "index/"))
    assert pointer is not None
    blobs: dict[str, bytes] = {}

    def fetch() -> None:
        fresh = s3.make_client()  # a cold process creates its client first
        for key in (pointer.index_key, pointer.metadata_key):
            blobs[key] = fresh.get_object(Bucket=published.bucket, Key=key)["Body"].read()

    def load() -> None:
        faiss.deserialize_index(np.frombuffer(blobs[pointer.index_key], dtype=np.uint8))
        Metadata.model_validate_json(blobs[pointer.metadata_key])

    vector = embedder.embed_texts([QUERY])
    python = [sys.executable, "-c", "pass"]
    imports = [sys.executable, "-c", IMPORTS[runtime]]
    load_model = _model_load(embedder.source, runtime=runtime)
    measured = {
        "interpreter start": [timed(lambda: subprocess.run(python, check=True)) for _ in range(3)],
        "imports": [],
        "model load": [timed(load_model) for _ in range(rounds)],
        "index fetch": [timed(fetch) for _ in range(rounds)],
        "index load": [timed(load) for _ in range(rounds)],
        "first query": [
            timed(
                lambda: (
                    embedder.embed_texts([QUERY]),
                    published.index.search(vector, k=10),
                )
            )
            for _ in range(5)
        ],
    }
    interpreter = min(measured["interpreter start"])
    measured["imports"] = [
        timed(lambda: subprocess.run(imports, check=True)) - interpreter for _ in range(rounds)
    ]
    return {name: min(values) for name, values in measured.items()}


def _model_load(source: str, *, runtime: str) -> Callable[[], object]:
    """The libraries' own loading of the model, nothing of the product's around it."""
    if runtime == "torch":
        from transformers import AutoModel, AutoProcessor

        return lambda: (AutoModel.from_pretrained(source), AutoProcessor.from_pretrained(source))
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from image_search.model.onnx_manifest import find_export, read_manifest

    directory = find_export(Path(source))
    assert directory is not None, source
    files = read_manifest(directory).files
    return lambda: (
        ort.InferenceSession(str(directory / files.text), providers=["CPUExecutionProvider"]),
        ort.InferenceSession(str(directory / files.vision), providers=["CPUExecutionProvider"]),
        Tokenizer.from_file(str(directory / files.tokenizer)),
    )
