"""The ONNX export directory: its manifest, and where one is found (shared by export and runtime).

An export is self-contained: ``text.onnx`` and ``vision.onnx`` (projected features, not yet
L2-normalised; their weights beside them in ``*.onnx.data``), ``tokenizer.json``,
``preprocessor_config.json`` and ``export.json`` (this manifest), which names the model it came
from. That name is the model's identity: vectors from the export and from the source model under
torch are interchangeable, so an index built by either is served by the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from image_search.errors import ModelLoadError
from image_search.model.text_clean import TextClean

MANIFEST = "export.json"
# Where ``auto`` also looks for an export "beside" a model: the hub's convention for ONNX files.
SUBDIRECTORY = "onnx"
# Bumped when a new runtime cannot read older exports (or the other way round). An fp32 CLIP
# export is still written as format 1, byte for byte as before; int8 and SigLIP exports as format
# 2, so that a runtime from before them refuses them instead of serving int8 vectors under the
# fp32 model's name (mixing them into its index) or padding SigLIP's texts CLIP's way; open_clip
# exports as format 3, which a format-2 runtime would tokenise without open_clip's text cleaning.
FORMAT = 1
NEWER_FORMAT = 2
OPEN_CLIP_FORMAT = 3
READABLE = (FORMAT, NEWER_FORMAT, OPEN_CLIP_FORMAT)

Precision = Literal["fp32", "int8"]


class ExportFiles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = "text.onnx"
    text_weights: str = "text.onnx.data"  # external data, named inside text.onnx
    vision: str = "vision.onnx"
    vision_weights: str = "vision.onnx.data"
    tokenizer: str = "tokenizer.json"
    preprocessor: str = "preprocessor_config.json"


class QualityCheck(BaseModel):
    """How a quantised export ranks the user's images against its fp32 original (the gate)."""

    model_config = ConfigDict(extra="ignore")

    source: str  # the s3:// prefix sampled
    sample: int  # images embedded by both
    prompts: int  # text queries built from folder names (0: no folders, no text figure)
    image: float  # mean top-10 overlap, image -> image
    text: float | None  # mean top-10 overlap, text -> image
    threshold: float
    passed: bool  # False only when the export was forced through a failed gate


class ExportManifest(BaseModel):
    # Unknown keys are ignored so later exports with extra facts still load here.
    model_config = ConfigDict(extra="ignore")

    format: int = FORMAT
    source: str  # the model exported, as it was named: the identity recorded by builds
    dim: int
    opset: int
    max_text_tokens: int
    pad_token: str
    pad_id: int
    image_size: int
    files: ExportFiles = ExportFiles()
    # Largest absolute difference from torch seen on a sample at export time.
    max_abs_error: float | None = None
    exported_with: dict[str, str] = {}
    precision: Precision = "fp32"
    check: QualityCheck | None = None
    # The text padding rule. CLIP pads a batch to its longest text, on the right; SigLIP pads
    # every text to a fixed length (it pools the last position), on its tokenizer's side.
    family: str = "clip"  # clip, siglip or open_clip
    pad_to: int | None = None
    pad_side: Literal["right", "left"] = "right"
    # What the runtime does to a text before the tokenizer (text_clean.py): open_clip's ftfy
    # repairs, which tokenizer.json cannot express.
    text_clean: TextClean = "none"

    @property
    def identity(self) -> str:
        """What builds record: the source model, and the precision when it is not fp32, so that
        fp32 and int8 vectors never share an index (a change of precision re-embeds)."""
        return self.source if self.precision == "fp32" else f"{self.source}#{self.precision}"

    def write(self, directory: Path) -> None:
        # An fp32 CLIP export keeps format 1 and the keys it always had, byte for byte; anything
        # a format-1 reader would get wrong (int8 vectors under the fp32 name, SigLIP's padding)
        # is format 2, which such a reader refuses.
        changed = {name for name in NEWER_FIELDS if getattr(self, name) != _default(name)}
        self.format = FORMAT
        if changed:
            self.format = NEWER_FORMAT
        if self.text_clean != _default("text_clean"):
            self.format = OPEN_CLIP_FORMAT
        text = self.model_dump_json(indent=2, exclude=None if changed else set(NEWER_FIELDS))
        (directory / MANIFEST).write_text(text + "\n")


def _default(name: str) -> object:
    return ExportManifest.model_fields[name].default


# Fields a format-1 reader does not know.
NEWER_FIELDS = ("precision", "check", "family", "pad_to", "pad_side", "text_clean")


def find_export(directory: Path) -> Path | None:
    """The export in ``directory`` itself or in its ``onnx/`` subdirectory, if there is one."""
    for candidate in (directory, directory / SUBDIRECTORY):
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def read_manifest(directory: Path) -> ExportManifest:
    """The manifest of the export in ``directory``, with every file it names present."""
    path = directory / MANIFEST
    try:
        manifest = ExportManifest.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the ONNX export manifest {path}: {exc}") from exc
    if manifest.format not in READABLE:
        raise ModelLoadError(
            f"{path} is export format {manifest.format}; this version reads formats "
            f"{', '.join(map(str, READABLE))}: export the model again with "
            "`python -m image_search export`"
        )
    names = manifest.files.model_dump().values()
    # The manifest is data from wherever the export came from (an s3:// model): its file names
    # must name files in this directory, not paths that lead out of it.
    outside = [name for name in names if Path(name).name != name or name in ("", ".", "..")]
    if outside:
        raise ModelLoadError(
            f"{path} names files outside its directory: {outside}; export the model again"
        )
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise ModelLoadError(f"the ONNX export in {directory} is incomplete: missing {missing}")
    return manifest
