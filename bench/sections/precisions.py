"""(9) Model x precision: the benchmark model's ONNX export at fp32 and at int8 (dynamic
quantisation, issue 23), beside torch, in one run with the same inputs.

Text and image encode p50 at batch 1 (what a search pays), images/s at batch 32 (what a build
gets) and the export's size on disk. int8's speed depends on the CPU's VNNI instructions: the
group names whether this CPU has them, and the int8 targets are checked only where it does
(reported elsewhere). int8's quality is not a speed figure: ``export --check`` measures it on the
user's images (docs/models.md).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.fixtures.model import exported
from bench.report.stats import Rounds, Row, timed
from bench.sections.runtimes import BATCH, QUERY, _p50_rounds

if TYPE_CHECKING:
    from bench.sections.shared import Shared

LOG = logging.getLogger(__name__)

TEXT_TARGET = 0.25  # int8 text encode p50 against torch's (issue 23)
SIZE_TARGET_MB = 160  # int8 export, both towers


def run(shared: Shared) -> None:
    from bench.fixtures import photos
    from image_search.model.images import decode
    from image_search.model.onnx_clip import OnnxEmbedder

    LOG.info("(9) precisions: fp32 and int8 exports beside torch")
    fp32 = exported(shared.model)
    exports = {"fp32": fp32, "int8": _int8(fp32)}
    work = shared.work / "precisions"
    embedders: dict[str, Any] = {"torch": shared.torch}
    for precision, directory in exports.items():
        embedders[f"onnx {precision}"] = OnnxEmbedder(source=str(directory), cache_dir=work).load()
    vnni = has_vnni()
    group = f"precisions: {shared.model.name} (VNNI {'yes' if vnni else 'no'})"
    pictures = [decode(photos.jpeg(seed), max_pixels=10**8) for seed in range(BATCH)]
    calls = {
        "text p50 (batch 1)": lambda e: e.embed_texts([QUERY]),
        "image p50 (batch 1, 640x480 JPEG)": lambda e: e.embed_images(pictures[:1]),
    }
    samples, rounds = shared.sizes.runtime_samples, shared.sizes.runtime_rounds
    for embedder in embedders.values():
        for call in calls.values():
            for _ in range(3):  # first calls allocate and tune
                call(embedder)
    for what, call in calls.items():
        per_round = _p50_rounds(call, embedders, samples=samples, rounds=rounds)
        torch_p50 = Rounds(per_round["torch"]).median
        for name, values in per_round.items():
            extra: dict[str, Any] = {}
            if name != "torch":
                ratio = Rounds(values).median / torch_p50
                extra = {"floor": torch_p50, "ratio": ratio, "note": "ratio = this / torch"}
                if name == "onnx int8" and what.startswith("text"):
                    extra |= {"target": f"≤ {TEXT_TARGET}× torch (with VNNI)"}
                    extra |= {"ok": ratio <= TEXT_TARGET if vnni else None}
            shared.report.add(Row.of(group, f"{what}, {name}", Rounds(values), "ms", **extra))
    for name, embedder in embedders.items():
        rates = [BATCH / timed(partial(embedder.embed_images, pictures)) for _ in range(rounds)]
        shared.report.add(
            Row.of(group, f"images/s (batch {BATCH}), {name}", Rounds(rates), "img/s")
        )
    for precision, directory in exports.items():
        size = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        extra = {}
        if precision == "int8":
            extra = {"target": f"≤ {SIZE_TARGET_MB} MB", "ok": size <= SIZE_TARGET_MB}
        shared.report.add(Row.of(group, f"export size, {precision}", Rounds([size]), "MB", **extra))


def has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _int8(fp32: Path) -> Path:
    """The int8 copy of the fp32 export, beside it (made once per machine and recipe, like the
    export): named by the recipe, so a new one re-quantises instead of reusing an older copy."""
    from image_search.files import atomic_path
    from image_search.model.onnx_manifest import MANIFEST
    from image_search.model.quantize import RECIPE, quantise_export

    target = fp32.parent / f"{fp32.name}-int8-{RECIPE}"
    if not (target / MANIFEST).is_file():
        with atomic_path(target, directory=True) as staging:
            quantise_export(fp32, staging)
    return target
