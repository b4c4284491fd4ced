"""Resident memory of a serialised index once loaded, measured in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
    """RSS growth of a process that loads ``path`` through the product's ``index.from_bytes``."""
    code = (
        "import gc, json, sys; from pathlib import Path; "
        "from image_search.index import faiss_index as index; from bench.memory import rss_bytes; "
        "before = rss_bytes(); loaded = index.from_bytes(Path(sys.argv[1]).read_bytes()); "
        "gc.collect(); print(json.dumps(rss_bytes() - before))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1]))
