"""transformers CLIP-family checkpoints (CLIP, SigLIP) to the export format: both towers as
ONNX, the fast tokenizer's ``tokenizer.json``, the image processor's config and the manifest.

With ``torch_clip.py`` the only module importing transformers. It runs where torch and
transformers are installed (a developer machine, infra/Dockerfile's export stage), never in the
ONNX runtime. ``export.py`` drives it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModel, AutoProcessor

from image_search.errors import ModelLoadError
from image_search.model import source as model_source
from image_search.model.onnx_manifest import ExportFiles, ExportManifest
from image_search.model.onnx_writer import (
    OPSET,
    SAMPLE_TEXTS,
    check_close,
    export_onnx,
    readable,
    sample_images,
)
from image_search.model.torchvision_ops import ensure_importable
from image_search.storage import s3

LOG = logging.getLogger(__name__)

# transformers model types whose two towers, tokenizer and preprocessing the export reproduces.
FAMILIES = ("clip", "siglip")


class _TextTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        # A tokenizer that gives no mask (SigLIP's) exports a graph without that input.
        masks = {} if attention_mask is None else {"attention_mask": attention_mask}
        out = self.model.get_text_features(input_ids=input_ids, **masks)
        # transformers 5 returns an output object; older releases returned the tensor itself.
        return getattr(out, "pooler_output", out)


@dataclass(frozen=True, slots=True)
class TextRule:
    """How a family's texts become token ids: the padding its model was trained with."""

    family: str  # the transformers model_type: clip or siglip
    max_tokens: int
    pad_to: int | None  # every text padded to this length (SigLIP), or to the batch's longest
    pad_side: str
    inputs: tuple[str, ...]  # what the tokenizer gives the model: input_ids[, attention_mask]

    @classmethod
    def of(cls, model: Any, tokenizer: Any) -> TextRule:
        family = str(model.config.model_type)
        if family not in FAMILIES:
            raise ModelLoadError(f"{family} models cannot be exported; supported: {FAMILIES}")
        max_tokens = int(model.config.text_config.max_position_embeddings)
        names = tuple(
            n for n in ("input_ids", "attention_mask") if n in tokenizer.model_input_names
        )
        return cls(
            family=family,
            max_tokens=max_tokens,
            # SigLIP pools the last position, so its texts are always padded to the length it
            # was trained at (64); unpadded texts give other vectors.
            pad_to=max_tokens if family == "siglip" else None,
            pad_side=str(tokenizer.padding_side),
            inputs=names,
        )

    def encode(self, tokenizer: Any, texts: list[str]) -> Any:
        """The tokenizer's own encoding, as the model's processor gives it (pytorch tensors)."""
        return tokenizer(
            texts,
            padding="max_length" if self.pad_to else True,
            truncation=True,
            max_length=self.pad_to or self.max_tokens,
            return_tensors="pt",
        )


class _VisionTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=pixel_values)
        return getattr(out, "pooler_output", out)


def load(
    source: str, *, cache_dir: Path, client: s3.S3Client | None
) -> Callable[[Path], ExportManifest]:
    """The model ``source`` names (hub id, local or ``s3://`` directory), ready to be written:
    the function returned writes its fp32 export into a directory."""
    path = model_source.resolve(source, cache_dir=cache_dir, client=client)
    # With torchvision installed (the open_clip export environment) transformers would import it
    # and pick its torchvision image processors; the PIL ones are what preprocess.py reproduces.
    ensure_importable()
    try:
        model = AutoModel.from_pretrained(path).eval()
        processor = AutoProcessor.from_pretrained(path, backend="pil")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {source!r}: {str(exc).splitlines()[0]}") from exc
    if not hasattr(model, "get_text_features") or not hasattr(model, "get_image_features"):
        raise ModelLoadError(f"model {source!r} is not a CLIP-family model")
    if getattr(processor, "tokenizer", None) is None or not hasattr(
        processor.tokenizer, "backend_tokenizer"
    ):
        raise ModelLoadError(
            f"model {source!r} has no fast tokenizer (a tokenizer.json, as the `tokenizers` "
            "library loads it), which the ONNX runtime needs"
        )
    return lambda directory: write_export(model, processor, source=source, directory=directory)


def write_export(model: Any, processor: Any, *, source: str, directory: Path) -> ExportManifest:
    """The export's files in ``directory``; raises when it does not reproduce torch's vectors."""
    files = ExportFiles()
    tokenizer = processor.tokenizer
    rule = TextRule.of(model, tokenizer)
    # Two texts of different lengths, so the traced graph builds the padding mask from its
    # input instead of baking in "no padding".
    samples = rule.encode(tokenizer, SAMPLE_TEXTS[:2])
    text_args = tuple(samples[name] for name in rule.inputs)
    size = int(model.config.vision_config.image_size)
    with torch.no_grad():
        dim = int(_TextTower(model)(*text_args).shape[-1])
        export_onnx(
            _TextTower(model),
            text_args,
            directory / files.text,
            weights=files.text_weights,
            inputs={name: {0: "batch", 1: "tokens"} for name in rule.inputs},
        )
        export_onnx(
            _VisionTower(model),
            (torch.zeros((2, 3, size, size)),),
            directory / files.vision,
            weights=files.vision_weights,
            inputs={"pixel_values": {0: "batch"}},
        )
    # A copy of the fast tokenizer's own pipeline, padding and truncation cleared: the manifest
    # carries those, as ClipEmbedder passes them per call.
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(directory / files.tokenizer))
    (directory / files.preprocessor).write_text(processor.image_processor.to_json_string())
    manifest = ExportManifest(
        source=source,
        dim=dim,
        opset=OPSET,
        max_text_tokens=rule.max_tokens,
        pad_token=str(tokenizer.pad_token),
        pad_id=int(tokenizer.pad_token_id),
        image_size=size,
        files=files,
        exported_with={"torch": torch.__version__, "transformers": transformers.__version__},
        family=rule.family,
        pad_to=rule.pad_to,
        pad_side="left" if rule.pad_side == "left" else "right",
    )
    manifest.write(directory)
    manifest.max_abs_error = _check(model, processor, directory, rule=rule)
    manifest.write(directory)
    readable(directory)
    LOG.info(
        "exported %s (%s, dim %d) to ONNX; largest difference from torch %.1e",
        source,
        rule.family,
        manifest.dim,
        manifest.max_abs_error,
    )
    return manifest


def _check(model: Any, processor: Any, directory: Path, *, rule: TextRule) -> float:
    """Largest difference between the export's vectors and torch's on sample inputs."""
    from image_search.model.onnx_clip import OnnxEmbedder

    images = sample_images()
    runtime = OnnxEmbedder(source=str(directory), cache_dir=directory).load()
    ours = [runtime.embed_texts(SAMPLE_TEXTS), runtime.embed_images(images)]
    text = rule.encode(processor.tokenizer, SAMPLE_TEXTS)
    image = processor.image_processor(images=images, return_tensors="pt")
    with torch.inference_mode():
        theirs = [
            getattr(out, "pooler_output", out).numpy()
            for out in (model.get_text_features(**text), model.get_image_features(**image))
        ]
    return check_close(ours, theirs)
