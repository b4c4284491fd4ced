"""Timing series, recall, and the rows of the result table."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def recall(found: Iterable[Iterable[int]], truth: Iterable[Iterable[int]], *, k: int) -> float:
    """recall@k: the share of each probe's true top ``k`` found, averaged over the probes."""
    return statistics.fmean(len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True))


@dataclass
class Rounds:
    """Several rounds of one measurement: the figure is the median round, min–max beside it."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def latency_rounds(
    fn: Callable[[], Any], *, rounds: int, per_round: int, q: float = 50
) -> tuple[Rounds, list[float]]:
    """Per-round ``q``-th percentile of ``fn``'s duration in ms, and every sample (ms)."""
    every: list[float] = []
    per: list[float] = []
    for _ in range(rounds):
        samples = [timed(fn) * 1000 for _ in range(per_round)]
        per.append(percentile(samples, q))
        every.extend(samples)
    return Rounds(per), every


@dataclass
class Row:
    """One figure of the table; ``ratio`` and ``ok`` only where the issue sets a target."""

    group: str
    name: str
    value: float
    unit: str
    low: float | None = None
    high: float | None = None
    floor: float | None = None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @classmethod
    def of(cls, group: str, name: str, rounds: Rounds, unit: str, **extra: Any) -> Row:
        return cls(group, name, rounds.median, unit, rounds.low, rounds.high, **extra)


@dataclass
class Report:
    mode: str
    rows: list[Row] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def missed(self) -> list[Row]:
        return [row for row in self.rows if row.ok is False]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "machine": self.machine, "rows": [asdict(r) for r in self.rows]}


def machine_info() -> dict[str, Any]:
    import platform

    import faiss
    import torch

    cpu = ""
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next(line.split(":", 1)[1].strip() for line in file if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "load_average_at_start": os.getloadavg(),
    }
