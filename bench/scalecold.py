"""``python -m bench scale --count N``: a cold start of the service over N images, end to end.

Publishes N synthetic clustered 512-d vectors (bench.fixtures.data) with realistic keys (about 60
characters, a few hundred folders) through the product's own ``artefacts.publish.publish`` to a
file-backed S3 on loopback (bench.fixtures.objectstore), then spawns a fresh process
(bench.children.scale)
that runs the service as Lambda would: pointer read, fetch, load, one text search through the
model. Then 200 held-out query vectors through ``index.search``: latency once the index is
complete locally, and recall@10 against exact search (computed here, chunk by chunk).

Prints one summary line; ``--json`` writes the figures (count, index_type, cold_start_s, rss_mb,
search_p50_ms, recall_at_10, index_bytes and the split).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.fixtures import data
from bench.fixtures.data import K
from bench.fixtures.model import benchmark_model, exported
from bench.fixtures.publish import publish_build
from bench.fixtures.s3server import s3_server
from bench.fixtures.server import service_env
from bench.paths import ROOT
from bench.report.stats import recall

LOG = logging.getLogger(__name__)

QUERIES = 200
FOLDERS = 300
WORDS = ("beach", "harbour", "street", "market", "sunset", "family", "garden", "mountain")
TARGETS = {  # count → (cold start s, RSS MB, p50 ms, recall@10, index bytes), from the issue
    1_000_000: (3.0, 1500.0, 5.0, 0.95, None),
    10_000_000: (10.0, None, 10.0, 0.9, 10**9),
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument("--count", type=int, required=True, help="images (vectors) to publish")
    parser.add_argument("--index-type", default="auto", help="auto, flat, hnsw, ivf-sq8, ivf-pq")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--queries", type=int, default=QUERIES)
    parser.add_argument(
        "--model",
        choices=("tiny", "vit-b32"),
        default="tiny",
        help="tiny: a 2-layer CLIP with a 512-d projection (tests/support/factories.py); "
        "vit-b32: the ViT-B/32 architecture with random weights (bench/fixtures/model.py)",
    )
    parser.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        default="onnx",
        help="onnx: the service loads the model's ONNX export, as the Lambda image does",
    )
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("botocore", "s3transfer", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args.work and args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="image-search-scale-", dir=args.work) as scratch:
        work = Path(scratch)
        figures = run(args, work=work)
    print(summary(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace, *, work: Path) -> dict[str, Any]:
    from image_search.index import faiss_index

    model = _model(args.model, work)
    # Builds record the source model; an export of it serves them (its manifest names the source).
    served = model if args.runtime == "torch" else exported(model)
    started = time.perf_counter()
    vectors = data.clustered_file(args.count, work / "vectors.npy")
    probes = data.queries(args.count, args.queries)
    LOG.info("scale: %d vectors generated in %.1f s", args.count, time.perf_counter() - started)
    truth = data.exact_top_k(vectors, probes)
    index_type = faiss_index.choose_type(args.index_type, args.count)
    started = time.perf_counter()
    built = faiss_index.build(vectors, index_type=index_type)
    build_s = time.perf_counter() - started
    LOG.info("scale: %s built in %.1f s", index_type, build_s)
    np.save(work / "probes.npy", probes)
    with s3_server(files=str(work / "s3")):
        bucket = _publish(args.count, vectors=vectors, index=built, model=str(model))
        del built, vectors
        (work / "vectors.npy").unlink()
        child = _cold_child(bucket=bucket, model=str(served), work=work)
    recall_at_10 = recall(child.pop("ids"), truth, k=K)
    return {
        "count": args.count,
        "index_type": index_type,
        "model": args.model,
        "runtime": args.runtime,
        **child,
        "recall_at_10": round(recall_at_10, 4),
        "build_s": round(build_s, 1),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }


def keys(count: int) -> tuple[list[str], list[str]]:
    """Keys of about 60 characters in FOLDERS folders, sorted as builds sort them, and their
    folders."""
    folders = [f"{2014 + n % 10}-{WORDS[n % len(WORDS)]}-trip-{n:03d}" for n in range(FOLDERS)]
    per = -(-count // FOLDERS)
    out_keys = sorted(
        f"{folders[row // per]}/{1 + row % 12:02d}/IMG_{row:08d}_{WORDS[row % 7]}-{WORDS[row % 5]}"
        ".jpg"
        for row in range(count)
    )
    return out_keys, [key.partition("/")[0] for key in out_keys]


def _publish(count: int, *, vectors: np.ndarray, index: Any, model: str) -> str:
    from image_search.artefacts.manifest import Item
    from image_search.storage import s3

    client = s3.make_client()
    bucket = f"bench-scale-{count}"
    client.create_bucket(Bucket=bucket)
    names, folders = keys(count)
    # model_construct: the values are ours and valid; validating 10M items costs minutes.
    items = [
        Item.model_construct(key=key, folder=folder, etag=f"{row:032x}", size=2_000_000)
        for row, (key, folder) in enumerate(zip(names, folders, strict=True))
    ]
    del names, folders
    started = time.perf_counter()
    publish_build(
        client,
        bucket=bucket,
        model=model,
        index=index,
        vectors=vectors,
        items=items,
        sorted_by="key",
    )
    LOG.info("scale: published in %.1f s", time.perf_counter() - started)
    return bucket


def _cold_child(*, bucket: str, model: str, work: Path) -> dict[str, Any]:
    env = service_env(bucket=bucket, model=model, cache=work / "cache")
    env.update({"BENCH_PROBES": str(work / "probes.npy"), "BENCH_SPAWNED": repr(time.time())})
    done = subprocess.run(
        [sys.executable, "-m", "bench.children.scale"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the cold child failed:\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _model(kind: str, work: Path) -> Path:
    if kind == "vit-b32":
        return benchmark_model()
    sys.path.insert(0, str(ROOT))
    from tests.support.factories import save_tiny_clip

    return save_tiny_clip(work / "tiny-clip", projection_dim=data.DIM)


def summary(figures: dict[str, Any]) -> str:
    target = TARGETS.get(figures["count"])
    verdict = ""
    if target:
        cold, rss, p50, recall, size = target
        missed = [
            name
            for name, ok in (
                ("cold_start_s", figures["cold_start_s"] <= cold),
                ("rss_mb", rss is None or figures["rss_mb"] <= rss),
                ("search_p50_ms", figures["search_p50_ms"] <= p50),
                ("recall_at_10", figures["recall_at_10"] >= recall),
                ("index_bytes", size is None or figures["index_bytes"] <= size),
            )
            if not ok
        ]
        verdict = " targets: " + ("met" if not missed else "missed " + ",".join(missed))
    return (
        f"bench scale: count={figures['count']} index_type={figures['index_type']} "
        f"cold_start_s={figures['cold_start_s']:.2f} rss_mb={figures['rss_mb']:.0f} "
        f"search_p50_ms={figures['search_p50_ms']:.2f} recall_at_10={figures['recall_at_10']:.3f} "
        f"index_bytes={figures['index_bytes']}{verdict}"
    )
