"""Run by ``bench.report.memory.loaded_index_rss``: how much resident memory one index adds.

``python -m bench.children.index_rss PATH`` loads the serialised index at PATH through the
product's ``from_bytes`` and prints the RSS growth in bytes as JSON.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from bench.report.memory import rss_bytes


def main(path: Path) -> None:
    from image_search.index import faiss_index  # imported before the baseline: not the index

    before = rss_bytes()
    loaded = faiss_index.from_bytes(path.read_bytes())
    gc.collect()
    print(json.dumps(rss_bytes() - before))
    del loaded


if __name__ == "__main__":
    main(Path(sys.argv[1]))
