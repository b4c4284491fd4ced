"""open_clip models to the export format: ``--model open_clip:NAME --weights TAG_OR_FILE``.

NAME is an architecture open_clip ships a config for (``MobileCLIP2-S0``) with ``--weights`` a
pretrained tag (``dfndr2b``, fetched by open_clip) or a local checkpoint file; or
``hf-hub:org/repo`` / ``local-dir:DIR`` as open_clip loads them, which carry their weights and
preprocessing. The identity builds record is ``open_clip:<name>@<tag or sha256 of the weights>``.

Runs in the export environment only (requirements-export.txt): it imports torch, open_clip,
timm and torchvision. The export is checked against open_clip itself (its tokenizer, its
transform, its model) before it is written, like every family's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from image_search.errors import ConfigError, ModelLoadError
from image_search.model.clip_bpe import clip_bpe
from image_search.model.onnx_manifest import ExportFiles, ExportManifest
from image_search.model.onnx_writer import (
    OPSET,
    SAMPLE_TEXTS,
    check_close,
    export_onnx,
    readable,
    sample_images,
)
from image_search.model.preprocess_open_clip import OpenClipSpec
from image_search.model.torchvision_ops import ensure_importable

ensure_importable()  # before open_clip imports torchvision

import open_clip  # noqa: E402  (after the workaround above)
import timm  # noqa: E402

LOG = logging.getLogger(__name__)

FAMILY = "open_clip"
# What a local-dir: folder holds its weights in (open_clip's hub layout).
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True, slots=True)
class Named:
    """What to load and the identity it gets."""

    name: str  # as open_clip takes it: an architecture, hf-hub:org/repo or local-dir:DIR
    pretrained: str | None  # a tag or a checkpoint file, for an architecture
    identity: str


def identify(name: str, *, weights: str | None) -> Named:
    """``name`` and ``weights`` checked, with the identity they give (``ConfigError`` if wrong)."""
    if not name:
        raise ConfigError("name the model after open_clip:, for example open_clip:MobileCLIP2-S0")
    if name.startswith(("hf-hub:", "local-dir:")):
        if weights is not None:
            raise ConfigError(f"{name} carries its own weights: leave out --weights")
        if name.startswith("hf-hub:"):
            return Named(name, None, f"open_clip:{name}")
        directory = Path(name.removeprefix("local-dir:")).expanduser()
        found = [directory / f for f in WEIGHT_FILES if (directory / f).is_file()]
        if not found:
            raise ConfigError(f"{directory} holds none of {', '.join(WEIGHT_FILES)}")
        return Named(name, None, f"open_clip:{directory.name}@sha256:{_sha256(found[0])}")
    if name not in open_clip.list_models():
        raise ConfigError(f"open_clip has no model {name!r}; see open_clip.list_models()")
    if weights is None:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"open_clip:{name} needs --weights: a local checkpoint file or a pretrained tag "
            f"({', '.join(tags) or 'open_clip lists none for it'})"
        )
    path = Path(weights).expanduser()
    if path.is_file():
        return Named(name, str(path), f"open_clip:{name}@sha256:{_sha256(path)}")
    return Named(name, weights, f"open_clip:{name}@{weights}")


def load(name: str, *, weights: str | None) -> Callable[[Path], ExportManifest]:
    """The model, its transform and tokenizer, ready to be written: the function returned writes
    the fp32 export into a directory."""
    named = identify(name, weights=weights)
    try:
        model, _, transform = open_clip.create_model_and_transforms(
            named.name, pretrained=named.pretrained
        )
        tokenizer = open_clip.get_tokenizer(named.name)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"open_clip cannot load {named.identity}: {exc}") from exc
    if named.pretrained is not None and Path(named.pretrained).is_file():
        _warn_if_published_preprocessing_differs(named.name, model.visual.preprocess_cfg)
    model.eval()
    return lambda directory: write_export(
        model, transform, tokenizer, identity=named.identity, directory=directory
    )


def write_export(
    model: Any, transform: Any, tokenizer: Any, *, identity: str, directory: Path
) -> ExportManifest:
    """The export's files in ``directory``; raises when it does not reproduce open_clip."""
    _check_tokenizer(tokenizer, identity)
    spec = _spec(model.visual.preprocess_cfg, identity)
    files = ExportFiles()
    length = int(tokenizer.context_length)
    height, _ = spec.size
    # The image tower folds its train-time branches (FastViT's reparameterisation, timm's
    # MobileOne blocks) into single convolutions: the same function, a third of the time. The
    # check below compares with the model as open_clip runs it, unfolded.
    inference = timm.utils.reparameterize_model(copy.deepcopy(model))
    ids = tokenizer(SAMPLE_TEXTS[:2])
    with torch.no_grad():
        dim = int(inference.encode_text(ids).shape[-1])
        export_onnx(
            _TextTower(inference),
            (ids,),
            directory / files.text,
            weights=files.text_weights,
            inputs={"input_ids": {0: "batch"}},  # always padded to the context length
        )
        export_onnx(
            _VisionTower(inference),
            (torch.zeros((2, 3, height, height)),),
            directory / files.vision,
            weights=files.vision_weights,
            inputs={"pixel_values": {0: "batch"}},
        )
    start, end = (tokenizer.decoder[i] for i in (tokenizer.sot_token_id, tokenizer.eot_token_id))
    clip_bpe(tokenizer.encoder, tokenizer.bpe_ranks, start=start, end=end).save(
        str(directory / files.tokenizer)
    )
    (directory / files.preprocessor).write_text(json.dumps(spec.to_config(), indent=2) + "\n")
    manifest = ExportManifest(
        source=identity,
        dim=dim,
        opset=OPSET,
        max_text_tokens=length,
        pad_token=tokenizer.decoder[0],
        pad_id=0,  # open_clip fills with zeros: the id of "!", never the end token
        image_size=height,
        files=files,
        exported_with={
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "timm": timm.__version__,
        },
        family=FAMILY,
        # No attention mask: padding tokens are attended to, so every text has the length the
        # model was trained at; an unpadded text gives another vector.
        pad_to=length,
        pad_side="right",
        text_clean="open_clip",
    )
    manifest.write(directory)
    manifest.max_abs_error = _check(model, transform, tokenizer, directory)
    manifest.write(directory)
    readable(directory)
    LOG.info(
        "exported %s (dim %d) to ONNX; largest difference from open_clip %.1e",
        identity,
        dim,
        manifest.max_abs_error,
    )
    return manifest


class _TextTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids)  # projected, not normalised (the runtime does)


class _VisionTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values)


def _check(model: Any, transform: Any, tokenizer: Any, directory: Path) -> float:
    """Largest difference between the export's vectors and open_clip's on sample inputs."""
    from image_search.model.onnx_clip import OnnxEmbedder

    images = sample_images()
    runtime = OnnxEmbedder(source=str(directory), cache_dir=directory).load()
    ours = [runtime.embed_texts(SAMPLE_TEXTS), runtime.embed_images(images)]
    pixels = torch.stack([transform(image) for image in images])
    with torch.inference_mode():
        theirs = [
            model.encode_text(tokenizer(SAMPLE_TEXTS)).numpy(),
            model.encode_image(pixels).numpy(),
        ]
    return check_close(ours, theirs)


def _check_tokenizer(tokenizer: Any, identity: str) -> None:
    # CLIP's BPE with open_clip's default "lower" cleaning is what clip_bpe and text_clean
    # reproduce; a Hugging Face tokenizer (SigLIP under open_clip) or another cleaning is not.
    # The cleanings differ on this probe: lower -> "a, b", whitespace -> "A, B", canonicalize
    # -> "a b".
    simple = isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer)
    if not simple or tokenizer.reduction_fn is not None or tokenizer.clean_fn("A,  B") != "a, b":
        raise ModelLoadError(
            f"{identity}: only open_clip models with CLIP's tokenizer and its default cleaning "
            f"can be exported (this one has {type(tokenizer).__name__})"
        )


def _spec(config: dict[str, Any], identity: str) -> OpenClipSpec:
    try:
        spec = OpenClipSpec.from_config(config)
    except (KeyError, ValueError) as exc:
        raise ModelLoadError(f"{identity}: its preprocessing cannot be exported: {exc}") from exc
    if config.get("mode", "RGB") != "RGB" or spec.size[0] != spec.size[1]:
        raise ModelLoadError(f"{identity}: only RGB, square inputs are supported ({config})")
    return spec


def _warn_if_published_preprocessing_differs(name: str, used: dict[str, Any]) -> None:
    """A bare checkpoint file brings no preprocessing: open_clip uses the architecture's default,
    which for some models (MobileCLIP's) is not what their published weights were trained with."""
    keys = ("mean", "std", "interpolation", "resize_mode")
    for tag in open_clip.list_pretrained_tags_by_model(name):
        published = open_clip.get_pretrained_cfg(name, tag)
        differs = {
            k: published[k] for k in keys if _same(published.get(k, used[k])) != _same(used[k])
        }
        if differs:
            LOG.warning(
                "a weights file gets %s's default preprocessing %s; its published weights (%s) "
                "use %s. If the file holds those, export the downloaded hub folder instead "
                "(--model open_clip:local-dir:DIR), whose config carries their preprocessing",
                name,
                {k: used[k] for k in keys},
                tag,
                differs,
            )


def _same(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
