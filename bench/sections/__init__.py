"""The benchmark's sections: one module each, listed once in ``SECTIONS`` in the order a run
measures them. ``python -m bench --only a,b`` picks from it; each module's ``run(shared)`` adds its
rows to ``shared.report``. A module is imported only when its section runs, after ``--threads``
has set OMP_NUM_THREADS (torch and FAISS size their thread pools when they are imported).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.sections.shared import Shared


@dataclass(frozen=True)
class Section:
    name: str  # also its module: bench/sections/<name>.py
    about: str

    def run(self, shared: Shared) -> None:
        importlib.import_module(f"{__name__}.{self.name}").run(shared)


SECTIONS = {
    section.name: section
    for section in (
        Section("scale", "(5) every index type over N vectors in one process"),
        Section("duplicates", "(6) the build's near-duplicate pass"),
        Section("stages", "(8) the build's plan and merge stages at N images"),
        Section("engines", "(7) the local engine against Ray"),
        Section("build", "(3) build throughput from S3, both runtimes"),
        Section("search", "(1, 2) text and image search through HTTP, both runtimes"),
        Section("coldstart", "(4) a fresh server until its first answer, both runtimes"),
        Section("runtimes", "(6) torch against ONNX Runtime: encode, threads, cold start"),
        Section("precisions", "(9) the export at fp32 and int8 beside torch: encode, size"),
        Section("photos", "(10) the build's cost of reading the photo fields"),
        Section("combined", "(11) a combined query against one text, through HTTP"),
        Section("filters", "(12) date filters keeping 1/10/50% of N images: p50, recall"),
        Section("freshness", "(13) segments' cost to a search; upload to searchable"),
        Section("models", "(14) model x precision: encode, build, search, cold start, size"),
        Section("ingest", "(15) a burst of uploads through ingest against the build: img/s"),
    )
}
