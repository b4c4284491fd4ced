#!/usr/bin/env python
"""Load test: concurrent clients against uvicorn on 127.0.0.1, mixing the API's requests.

``make load`` (or ``python bench/load.py``) runs 32 clients for 60 s after a warm-up: text
searches, image uploads and folder listings against the real app, served by uvicorn in its own
process, with an index built from sample_photos/ on an embedded S3 (moto, loopback). The tiny
random CLIP is used unless ``--model`` names a real one. Reports throughput, p50/p95/p99 latency
per kind, errors, and the server's resident memory after the warm-up and at the end; exits 1 on
any error or when memory grew more than 10 % (a leak). Traffic never leaves the loopback, and
every loop is bounded by a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fixtures.server import uvicorn_server  # noqa: E402  (the path above makes `bench` importable)

PHOTOS = ROOT / "sample_photos"
BUCKET = "load-test"
MAX_RSS_GROWTH = 0.10
QUERIES = [
    "a cat",
    "rocket launch into the sky",
    "coffee cup on a table",
    "animals",
    "flowers in nature",
    "an astronaut in space",
    "old coins",
    "a temple in china",
    "microscope image of cells",
    "a photographer with a camera",
]
# The mix of requests: text searches, image uploads, folder listings.
MIX: tuple[tuple[str, float], ...] = (("search", 0.5), ("upload", 0.3), ("folders", 0.2))


@dataclass
class KindStats:
    count: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0


@dataclass
class LoadReport:
    clients: int
    seconds: float
    requests: int
    errors: int
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rss_after_warmup_mb: float
    rss_at_end_mb: float
    rss_growth: float
    kinds: dict[str, KindStats] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    rss_samples_mb: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.rss_growth <= MAX_RSS_GROWTH

    def lines(self) -> list[str]:
        out = [
            f"{self.clients} clients, {self.seconds:.0f} s: {self.requests} requests "
            f"({self.per_second:.1f}/s), {self.errors} errors",
            f"latency ms: p50 {self.p50_ms:.1f}  p95 {self.p95_ms:.1f}  p99 {self.p99_ms:.1f}",
        ]
        for kind, stats in self.kinds.items():
            out.append(
                f"  {kind:8} {stats.count:6} requests, {stats.errors} errors, "
                f"p50 {stats.p50_ms:.1f}  p95 {stats.p95_ms:.1f}  p99 {stats.p99_ms:.1f}"
            )
        low, high = min(self.rss_samples_mb, default=0), max(self.rss_samples_mb, default=0)
        out.append(
            f"server RSS: {self.rss_after_warmup_mb:.1f} MB after warm-up, "
            f"{self.rss_at_end_mb:.1f} MB at the end ({self.rss_growth:+.1%}, "
            f"limit +{MAX_RSS_GROWTH:.0%}); during the run "
            f"{low:.1f}-{high:.1f} MB"
        )
        out.extend(f"error: {sample}" for sample in self.error_samples)
        return out


# ---- the server --------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---- the clients -------------------------------------------------------------------------------


@dataclass
class _Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)  # the server's, once a second

    def record(self, kind: str, seconds: float, problem: str | None) -> None:
        self.latencies.setdefault(kind, []).append(seconds * 1000)
        if problem is not None:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if len(self.samples) < 5:
                self.samples.append(f"{kind}: {problem}")


async def _one_request(
    http: httpx.AsyncClient, kind: str, rng: random.Random, images: list[tuple[str, bytes]]
) -> str | None:
    """Send one request of ``kind``; None when the answer is right, else what was wrong."""
    if kind == "search":
        body = {"query": rng.choice(QUERIES), "k": rng.choice((1, 5, 10, 20))}
        response = await http.post("/image_search/search", json=body)
    elif kind == "upload":
        name, data = rng.choice(images)
        files = {"file": (name, data, "application/octet-stream")}
        response = await http.post("/image_search/search_by_image", files=files, data={"k": "5"})
    else:
        response = await http.get("/image_search/folders")
    if response.status_code != 200:
        return f"{response.status_code} {response.text[:200]}"
    if not isinstance(response.json(), list) or not response.json():
        return f"empty answer {response.text[:200]}"
    return None


async def _client(
    http: httpx.AsyncClient,
    number: int,
    until: float,
    images: list[tuple[str, bytes]],
    results: _Results,
) -> None:
    rng = random.Random(number)
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    while time.monotonic() < until:
        kind = rng.choices(kinds, weights)[0]
        started = time.perf_counter()
        try:
            problem = await _one_request(http, kind, rng, images)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        results.record(kind, time.perf_counter() - started, problem)


async def _phase(
    url: str,
    *,
    clients: int,
    seconds: float,
    images: list[tuple[str, bytes]],
    headers: dict[str, str],
    pid: int,
) -> _Results:
    results = _Results()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=headers) as http:
        until = time.monotonic() + seconds
        await asyncio.gather(
            _sample_rss(pid, until, results),
            *(_client(http, n, until, images, results) for n in range(clients)),
        )
    return results


async def _sample_rss(pid: int, until: float, results: _Results) -> None:
    while time.monotonic() < until:
        results.rss_mb.append(round(rss_mb(pid), 1))
        await asyncio.sleep(1.0)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def run_load(
    url: str,
    *,
    pid: int,
    clients: int,
    seconds: float,
    warmup: float,
    images: list[tuple[str, bytes]],
    headers: dict[str, str] | None = None,
) -> LoadReport:
    """Warm up, note the server's RSS, run the measured phase, note RSS again."""
    options = {"clients": clients, "images": images, "headers": headers or {}, "pid": pid}
    asyncio.run(_phase(url, seconds=warmup, **options))  # type: ignore[arg-type]
    before = rss_mb(pid)
    started = time.monotonic()
    results = asyncio.run(_phase(url, seconds=seconds, **options))  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    after = rss_mb(pid)
    everything = [ms for values in results.latencies.values() for ms in values]
    kinds = {
        kind: KindStats(
            count=len(values),
            errors=results.errors.get(kind, 0),
            p50_ms=percentile(values, 50),
            p95_ms=percentile(values, 95),
            p99_ms=percentile(values, 99),
        )
        for kind, values in sorted(results.latencies.items())
    }
    return LoadReport(
        clients=clients,
        seconds=elapsed,
        requests=len(everything),
        errors=sum(results.errors.values()),
        per_second=len(everything) / elapsed,
        p50_ms=percentile(everything, 50),
        p95_ms=percentile(everything, 95),
        p99_ms=percentile(everything, 99),
        rss_after_warmup_mb=before,
        rss_at_end_mb=after,
        rss_growth=(after - before) / before,
        kinds=kinds,
        error_samples=results.samples,
        rss_samples_mb=results.rss_mb,
    )


def upload_images(photos: Path) -> list[tuple[str, bytes]]:
    """The sample photos, plus small PNG and GIF files, as uploads."""
    from tests.support.factories import encode, random_image

    files = [(p.name, p.read_bytes()) for p in sorted(photos.rglob("*.jpg"))]
    files += [(f"noise{i}.png", encode(random_image(i))) for i in range(3)]
    files += [("noise.gif", encode(random_image(9), "GIF"))]
    return files


# ---- setting the stage: S3, photos, model, index -----------------------------------------------


@contextmanager
def stage(model: str | None, photos: Path) -> Iterator[dict[str, str]]:
    """An embedded S3 with the photos and a published index; yields the server's environment."""
    from image_search.build.pipeline import run_build
    from image_search.config import get_settings
    from image_search.demo.environment import upload_photos
    from image_search.demo.local_s3 import embedded_s3
    from image_search.model.factory import embedder_for
    from image_search.storage import s3

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    with (
        tempfile.TemporaryDirectory(prefix="image-search-load-") as temp,
        embedded_s3() as endpoint,
    ):
        work = Path(temp)
        if model is None:
            from tests.support.factories import save_tiny_clip

            model = str(save_tiny_clip(work / "tiny-clip"))
        env = {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_DEFAULT_REGION": "us-east-1",
            "IMAGE_SEARCH_BUCKET": BUCKET,
            "IMAGE_SEARCH_MODEL": model,
            "IMAGE_SEARCH_INDEX_CACHE_DIR": str(work / "index-cache"),
            "IMAGE_SEARCH_MODEL_CACHE_DIR": str(work / "model-cache"),
        }
        os.environ.update(env)
        get_settings.cache_clear()
        client = s3.make_client()
        client.create_bucket(Bucket=BUCKET)
        upload_photos(client, bucket=BUCKET, photos=photos)
        settings = get_settings()
        # The settings' embedder, as the server picks it: torch, or ONNX Runtime for an export.
        report = run_build(settings, client=client, embedder=embedder_for(settings))
        print(f"index: {report.line()}", flush=True)
        yield env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="CLIP model id or directory (default: a tiny random CLIP)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured phase")
    parser.add_argument("--warmup", type=float, default=15.0, help="warm-up before measuring")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    with (
        stage(args.model, args.photos) as env,
        uvicorn_server({**os.environ, **env}, timeout=180) as (url, pid),
    ):
        print(f"uvicorn at {url} (pid {pid}); warming up for {args.warmup:.0f} s", flush=True)
        report = run_load(
            url,
            pid=pid,
            clients=args.clients,
            seconds=args.seconds,
            warmup=args.warmup,
            images=upload_images(args.photos),
        )
    print("\n".join(report.lines()))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    print("PASS" if report.ok else "FAIL", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
