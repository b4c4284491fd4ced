"""Run by ``bench.fixtures.families`` in the export environment (.venv-export): random weights of
MobileCLIP2-S0 (or its reduced config) saved as a checkpoint file and exported with
``python -m image_search export --model open_clip:ARCH --weights FILE``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    from image_search.cli import main as cli
    from tests.support import open_clip

    target, reduced = Path(argv[0]), "--reduced" in argv[1:]
    with tempfile.TemporaryDirectory() as work:
        arch = open_clip.register_reduced(Path(work)) if reduced else open_clip.ARCH
        weights = open_clip.save_random_weights(arch, Path(work) / "weights.pt")
        args = ["--model", f"open_clip:{arch}", "--weights", str(weights), "--output", str(target)]
        return cli(["export", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
