"""Resident memory: now, at its peak, and of a serialised index once loaded in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.paths import ROOT


def rss_bytes() -> int:
    return _status_bytes("VmRSS:")


def peak_rss_bytes() -> int:
    """The most this process has held resident (since start, or since ``reset_peak``)."""
    return _status_bytes("VmHWM:")


def reset_peak() -> bool:
    """Start the peak afresh (Linux: writing 5 to clear_refs); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
    except OSError:
        return False
    return True


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def loaded_index_rss(path: Path) -> int:
    """RSS growth of a fresh process that loads ``path`` through the product's ``from_bytes``."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.children.index_rss", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1]))
