"""(6) The two runtimes on one model, in one run: torch (eager) against ONNX Runtime.

Encode p50 at batch 1 is what a search pays (a text query; an uploaded photo, preprocessing
included); images/s at batch 32 is what a build gets. Both go through the product's embedders,
alternating call by call so the machine's noise falls on both alike. Cold start: a fresh
interpreter until its first text vector, split into imports and model load, with its peak memory;
and, given a published index, the real server's spawn → first search answer
(bench.sections.coldstart).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.fixtures.model import exported
from bench.paths import ROOT
from bench.report.stats import Report, Rounds, Row, percentile, timed

if TYPE_CHECKING:
    from bench.fixtures.publish import Published
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

TARGET = 0.5  # ONNX encode p50 at batch 1, as a fraction of torch's
QUERY = "a red car in the city"
BATCH = 32
RUNTIMES = ("torch", "onnx")


def run(shared: Shared) -> None:
    from bench.fixtures.publish import publish_synthetic
    from image_search.storage import s3

    LOG.info("(6) runtimes: torch against ONNX Runtime")
    shared.s3()
    _compare(
        shared.report,
        model=shared.model,
        work=shared.work / "runtimes",
        samples=shared.sizes.runtime_samples,
        rounds=shared.sizes.runtime_rounds,
        published=publish_synthetic(
            s3.make_client(),
            count=shared.sizes.search_indexes[0],
            model=shared.torch.source,
            name="runtimes",
        ),
    )


def _compare(
    report: Report,
    *,
    model: Path,
    work: Path,
    samples: int,
    rounds: int,
    published: Published | None = None,
) -> None:
    from bench.fixtures import photos
    from image_search.model.images import decode
    from image_search.model.onnx_clip import OnnxEmbedder
    from image_search.model.torch_clip import ClipEmbedder

    export_dir = exported(model)
    embedders: dict[str, Any] = {
        "torch": ClipEmbedder(source=str(model), device="cpu", cache_dir=work),
        "onnx": OnnxEmbedder(source=str(export_dir), cache_dir=work),
    }
    pictures = [decode(photos.jpeg(seed), max_pixels=10**8) for seed in range(BATCH)]
    calls = {
        "text p50 (batch 1)": lambda e: e.embed_texts([QUERY]),
        "image p50 (batch 1, 640x480 JPEG)": lambda e: e.embed_images(pictures[:1]),
    }
    group = f"runtimes: {model.name}"
    for embedder in embedders.values():
        embedder.load()
        for call in calls.values():
            for _ in range(3):  # first calls allocate and tune; a serving process is past them
                call(embedder)
    for name, call in calls.items():
        per_round = _p50_rounds(call, embedders, samples=samples, rounds=rounds)
        _pair(report, group, name, per_round, unit="ms", target=True)
    rates: dict[str, list[float]] = {runtime: [] for runtime in RUNTIMES}
    for _ in range(rounds):
        for runtime in RUNTIMES:
            seconds = timed(partial(embedders[runtime].embed_images, pictures))
            rates[runtime].append(BATCH / seconds)
    _pair(report, group, f"images/s (batch {BATCH})", rates, unit="img/s", target=False)
    embedders.clear()  # free both models before loading the thread configurations
    _threads(
        report,
        export_dir=export_dir,
        work=work,
        picture=pictures[0],
        samples=samples,
        rounds=rounds,
    )
    _cold(report, model=model, export_dir=export_dir, work=work, rounds=rounds)
    if published is not None:
        _first_answer(report, model=model, export_dir=export_dir, published=published, work=work)


def _p50_rounds(
    call: Callable[[Any], object], embedders: dict[str, Any], *, samples: int, rounds: int
) -> dict[str, list[float]]:
    """Per embedder, each round's p50 in ms; the embedders take turns call by call."""
    per_round: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(rounds):
        got: dict[str, list[float]] = {name: [] for name in embedders}
        for _ in range(samples):
            for name, embedder in embedders.items():
                got[name].append(timed(lambda: call(embedder)) * 1000)  # noqa: B023
        for name in embedders:
            per_round[name].append(percentile(got[name], 50))
    return per_round


def _threads(
    report: Report, *, export_dir: Path, work: Path, picture: Any, samples: int, rounds: int = 3
) -> None:
    """ONNX Runtime's thread choice: one thread per call with a call per core at once, or every
    core on each call, one call at a time (OnnxEmbedder derives the calls from the threads).
    Latency with one caller; throughput with twice as many callers as cores, as a busy server."""
    from concurrent.futures import ThreadPoolExecutor

    from image_search.model.onnx_clip import OnnxEmbedder, usable_cores

    cores = usable_cores()
    configs = {
        f"{t} thread(s) per call, {max(1, cores // t)} call(s) at once": OnnxEmbedder(
            source=str(export_dir), cache_dir=work, threads=t
        ).load()
        for t in sorted({1, cores})
    }
    group = f"runtimes: ONNX Runtime threads ({cores} cores)"
    calls = {
        "text p50": lambda e: e.embed_texts([QUERY]),
        "image p50": lambda e: e.embed_images([picture]),
    }
    for what, call in calls.items():
        call_p50 = _p50_rounds(call, configs, samples=samples, rounds=rounds)
        for name, values in call_p50.items():
            report.add(Row.of(group, f"{what}, {name}", Rounds(values), "ms"))
    callers = 2 * cores
    rates: dict[str, list[float]] = {name: [] for name in configs}
    with ThreadPoolExecutor(callers) as pool:
        for _ in range(rounds):
            for name, embedder in configs.items():
                count = callers * max(2, samples // 4)
                started = time.perf_counter()
                for _ in pool.map(embedder.embed_images, [[picture]] * count):
                    pass
                rates[name].append(count / (time.perf_counter() - started))
    for name, values in rates.items():
        label = f"images/s, {callers} concurrent callers, {name}"
        report.add(Row.of(group, label, Rounds(values), "img/s"))


def _pair(
    report: Report,
    group: str,
    name: str,
    values: dict[str, list[float]],
    *,
    unit: str,
    target: bool,
) -> None:
    torch_rounds, onnx_rounds = Rounds(values["torch"]), Rounds(values["onnx"])
    ratio = onnx_rounds.median / torch_rounds.median
    report.add(Row.of(group, f"{name}, torch", torch_rounds, unit))
    report.add(
        Row.of(
            group,
            f"{name}, onnx",
            onnx_rounds,
            unit,
            floor=torch_rounds.median,
            ratio=ratio,
            target=f"≤ {TARGET}× torch" if target else "",
            ok=ratio <= TARGET if target else None,
            note="floor = torch's figure; ratio = onnx / torch",
        )
    )


def _cold(report: Report, *, model: Path, export_dir: Path, work: Path, rounds: int) -> None:
    """Fresh interpreters, alternating runtimes: imports, model load, first query, peak RSS."""
    sources = {"torch": model, "onnx": export_dir}
    steps: dict[str, list[dict[str, float]]] = {runtime: [] for runtime in RUNTIMES}
    for _ in range(rounds):
        for runtime in RUNTIMES:
            command = [sys.executable, "-m", "bench.children.runtime", runtime]
            command.append(str(sources[runtime]))
            command.append(str(work / "cold-cache"))
            started = time.perf_counter()
            out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
            measured = json.loads(out.stdout.strip().splitlines()[-1])
            measured["spawn → first text vector"] = time.perf_counter() - started
            steps[runtime].append(measured)
    group = f"runtimes cold start: {model.name}"
    names = ["imports", "model load", "first query", "spawn → first text vector", "peak RSS"]
    for name in names:
        unit = "MB" if name == "peak RSS" else "s"
        values = {runtime: [step[name] for step in steps[runtime]] for runtime in RUNTIMES}
        _pair(report, group, name, values, unit=unit, target=False)


def _first_answer(
    report: Report, *, model: Path, export_dir: Path, published: Published, work: Path
) -> None:
    """The real server (uvicorn handler:app) from spawn to its first search answer."""
    from bench.fixtures.server import first_answer, service_env

    values: dict[str, list[float]] = {}
    for runtime, source in (("torch", model), ("onnx", export_dir)):
        env = service_env(bucket=published.bucket, model=str(source), cache=work / runtime)
        env["IMAGE_SEARCH_RUNTIME"] = runtime
        values[runtime] = [first_answer(env)]
    group = f"runtimes cold start: {model.name}"
    name = f"server spawn → first search answer ({published.count // 1000}k index)"
    _pair(report, group, name, values, unit="s", target=False)
