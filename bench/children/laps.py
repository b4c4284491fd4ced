"""A child's start-up timed step by step, from the moment its parent spawned it."""

from __future__ import annotations

import os
import time


class Laps:
    """Seconds per step: each ``lap(name)`` is the time since the previous one.

    The first step is the interpreter's start: the parent passes its wall clock at spawn in
    ``BENCH_SPAWNED`` and the time until ``Laps()`` is that step's.
    """

    def __init__(self, interpreter: str) -> None:
        self.spawned = float(os.environ["BENCH_SPAWNED"])
        self.seconds: dict[str, float] = {interpreter: time.time() - self.spawned}
        self._mark = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._mark
        self._mark = now

    def since_spawn(self) -> float:
        return time.time() - self.spawned
