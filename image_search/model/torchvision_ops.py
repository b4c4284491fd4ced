"""Making ``import torchvision`` work beside a CPU torch when torchvision's C++ operators do not
load (export environments only: serving never imports torch).

PyPI has no CPU build of torchvision: its wheel links CUDA libraries that a CPU torch lacks, so
its ``_C`` extension fails to load, which torchvision tolerates, except that it then registers a
fake kernel for ``torchvision::nms`` and ``qnms`` unconditionally, and that raises "operator
torchvision::nms does not exist" (pytorch/vision#9085, still open upstream). open_clip imports
torchvision for its transforms, and transformers' image processors import it whenever it is
installed. Defining the two operators' schemas first lets the import finish; nothing here calls
them (they are detection ops), and calling one would fail with "no kernel" rather than run.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

# The schemas torchvision's C++ library defines for the two ops its Python registers fakes for.
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_lock = threading.Lock()
_fragment: Any = None  # kept alive: dropping the Library object would unregister the schemas
_checked = False


def ensure_importable() -> None:
    """Before torchvision is first imported: define its ops' schemas if its ``_C`` cannot load.
    A no-op when torchvision is absent, already imported, or its extension loads."""
    global _checked, _fragment
    with _lock:
        if _checked:
            return
        _checked = True
        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            return
        import sys

        import torch

        if "torchvision" in sys.modules:
            return
        package = Path(next(iter(spec.submodule_search_locations)))
        for library in sorted(package.glob("_C.*")):
            try:
                torch.ops.load_library(str(library))  # what torchvision's own import does
                return
            except OSError as exc:
                reason = exc
                break
        else:
            reason = OSError("no _C extension")
        LOG.info("torchvision's C++ operators do not load (%s); defining their schemas", reason)
        _fragment = torch.library.Library("torchvision", "FRAGMENT")
        for schema in SCHEMAS:
            _fragment.define(schema)
