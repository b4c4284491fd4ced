"""Local files that appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path, *, directory: bool = False) -> Iterator[Path]:
    """A temporary sibling of ``target`` to fill; it replaces ``target`` when the block succeeds.

    A crash or an exception leaves ``target`` as it was (a complete older copy or nothing), never
    a half-written file or folder that a later start would trust. The sibling sits in the same
    folder so the final rename stays on one file system, where it is atomic for files.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.part-"))
    else:
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.part-")
        os.close(handle)
        staging = Path(name)
    try:
        yield staging
        if directory and target.exists():
            # A folder cannot be renamed over a non-empty one; the window without it is short
            # and every reader checks for a complete copy before trusting it.
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if directory:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
