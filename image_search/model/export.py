"""``python -m image_search export``: a CLIP model's two towers as ONNX, plus what serving needs.

With ``torch_clip.py`` the only module importing torch and transformers. It runs where they are
installed (a developer machine, infra/Dockerfile's export stage), never in the ONNX runtime.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import transformers
from boto3.exceptions import S3UploadFailedError
from PIL import Image
from tokenizers import Tokenizer
from transformers import AutoModel, AutoProcessor

from image_search.errors import ConfigError, ModelLoadError, StorageUnavailableError
from image_search.files import atomic_path
from image_search.model import source as model_source
from image_search.model.onnx_manifest import MANIFEST, ExportFiles, ExportManifest, Precision
from image_search.model.quantize import Gate, write_int8
from image_search.model.vectors import normalise
from image_search.storage import s3

LOG = logging.getLogger(__name__)

# Opset 17 is the newest the TorchScript exporter covers fully; ONNX Runtime reads it everywhere.
OPSET = 17
# The export checks itself end to end (tokenizer, preprocessing, graphs) against torch and
# refuses to publish beyond this: the runtimes must be interchangeable for one index.
TOLERANCE = 1e-4
SAMPLE_TEXTS = ["a photo of a cat", "", "A RED  car in the city at night, " * 12]
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


def export(
    source: str,
    output: str,
    *,
    cache_dir: Path,
    client: s3.S3Client | None = None,
    precision: Precision = "fp32",
    gate: Gate | None = None,
) -> ExportManifest:
    """Export ``source`` (hub id, local or ``s3://`` directory) to ``output`` (local or s3)."""
    if gate is not None and precision == "fp32":
        raise ConfigError("--check compares a quantised export with fp32: add --quantize int8")
    path = model_source.resolve(source, cache_dir=cache_dir, client=client)
    try:
        model = AutoModel.from_pretrained(path).eval()
        processor = AutoProcessor.from_pretrained(path)
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

    def write_fp32(directory: Path) -> ExportManifest:
        return write_export(model, processor, source=source, directory=directory)

    def write(directory: Path) -> ExportManifest:
        if precision == "fp32":
            return write_fp32(directory)
        return _readable(write_int8(write_fp32, directory, gate=gate, client=client), directory)

    if output.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="image-search-export-") as work:
            manifest = write(Path(work))
            _upload(Path(work), output, client=client or s3.make_client())
        return manifest
    target = Path(output)
    _check_replaceable(target)
    # Written beside the target and renamed: a failed export never leaves half a directory
    # that auto-detection would take for a complete one.
    with atomic_path(target, directory=True) as staging:
        manifest = write(staging)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the export from other users (Lambda's)
    return manifest


def _readable(manifest: ExportManifest, directory: Path) -> ExportManifest:
    for path in directory.iterdir():
        path.chmod(0o644)  # onnx writes weights 0600: other users (Lambda's) must read them
    return manifest


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
    with warnings.catch_warnings(), torch.no_grad():
        dim = int(_TextTower(model)(*text_args).shape[-1])
        # The tracer flags Python branches on shapes: the sequence-length limit (truncation keeps
        # to it), mask padding (mask and ids always have one length) and SDPA's is_causal (texts
        # are never one token). Each holds for every input the runtime feeds.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index")
        # dynamo=False is a choice (see _export_onnx), not an oversight to be warned about.
        warnings.simplefilter("ignore", DeprecationWarning)
        _export_onnx(
            _TextTower(model),
            text_args,
            directory / files.text,
            weights=files.text_weights,
            inputs={name: {0: "batch", 1: "tokens"} for name in rule.inputs},
        )
        _export_onnx(
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
    _readable(manifest, directory)
    LOG.info(
        "exported %s (%s, dim %d) to ONNX; largest difference from torch %.1e",
        source,
        rule.family,
        manifest.dim,
        manifest.max_abs_error,
    )
    return manifest


def _export_onnx(
    tower: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    weights: str,
    inputs: dict[str, Any],
) -> None:
    # The TorchScript exporter (dynamo=False): both towers trace cleanly and match torch to ~1e-6.
    torch.onnx.export(
        tower,
        args,
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=list(inputs),
        output_names=["features"],
        dynamic_axes={**inputs, "features": {0: "batch"}},
    )
    # The weights in a file of their own, which ONNX Runtime maps instead of copying: measured on
    # ViT-B/32, half the session start-up time and ~300 MB less resident memory.
    graph = onnx.load(str(path))
    onnx.save_model(
        graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=weights
    )


def _check(model: Any, processor: Any, directory: Path, *, rule: TextRule) -> float:
    """Largest difference between the export's vectors and torch's on sample inputs."""
    from image_search.model.onnx_clip import OnnxEmbedder

    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for height, width in ((300, 200), (64, 500), (224, 224))
    ]
    runtime = OnnxEmbedder(source=str(directory), cache_dir=directory).load()
    ours = [runtime.embed_texts(SAMPLE_TEXTS), runtime.embed_images(images)]
    text = rule.encode(processor.tokenizer, SAMPLE_TEXTS)
    image = processor.image_processor(images=images, return_tensors="pt")
    with torch.inference_mode():
        theirs = [
            getattr(out, "pooler_output", out).numpy()
            for out in (model.get_text_features(**text), model.get_image_features(**image))
        ]
    error = max(float(np.abs(a - normalise(b)).max()) for a, b in zip(ours, theirs, strict=True))
    if not error <= TOLERANCE:
        raise ModelLoadError(
            f"the ONNX export differs from torch by {error:.1e} (> {TOLERANCE:g}); not written"
        )
    return error


def _check_replaceable(target: Path) -> None:
    if target.exists() and not (target.is_dir() and _is_export_or_empty(target)):
        raise ConfigError(
            f"{target} exists and is not an earlier export; choose a new directory "
            "(for example the model's own onnx/ subdirectory)"
        )


def _is_export_or_empty(directory: Path) -> bool:
    return (directory / MANIFEST).is_file() or not any(directory.iterdir())


def _upload(directory: Path, url: str, *, client: s3.S3Client) -> None:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    # The manifest last: a reader that finds it finds every file it names.
    names = sorted(p.name for p in directory.iterdir() if p.name != MANIFEST) + [MANIFEST]
    with s3.translate_errors(bucket):
        for name in names:
            try:
                client.upload_file(str(directory / name), bucket, prefix + name)
            except S3UploadFailedError as exc:  # boto3's transfer wraps the ClientError
                raise StorageUnavailableError(f"cannot upload the export to {url}: {exc}") from exc
    LOG.info("uploaded the export to s3://%s/%s", bucket, prefix)
