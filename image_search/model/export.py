"""``python -m image_search export``: any supported model to the one serving format.

Two ONNX towers, ``tokenizer.json``, ``preprocessor_config.json`` and ``export.json``, whatever
the family: transformers checkpoints (CLIP, SigLIP; ``export_transformers.py``) or open_clip
models (``--model open_clip:ARCH --weights TAG_OR_FILE``; ``export_open_clip.py``). This module
only picks the family, writes the result atomically (or uploads it) and quantises on request;
each family's module imports torch and its own library, and only when it is used.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from boto3.exceptions import S3UploadFailedError

from image_search.errors import ConfigError, ModelLoadError, StorageUnavailableError
from image_search.files import atomic_path
from image_search.model.onnx_manifest import MANIFEST, ExportManifest, Precision
from image_search.model.quantize import Gate, write_int8
from image_search.storage import s3

LOG = logging.getLogger(__name__)

OPEN_CLIP = "open_clip:"


def export(
    source: str,
    output: str,
    *,
    cache_dir: Path,
    client: s3.S3Client | None = None,
    precision: Precision = "fp32",
    gate: Gate | None = None,
    weights: str | None = None,
) -> ExportManifest:
    """Export ``source`` to ``output`` (local or s3); ``weights`` for open_clip models."""
    if gate is not None and precision == "fp32":
        raise ConfigError("--check compares a quantised export with fp32: add --quantize int8")
    write_fp32 = _family(source, weights=weights, cache_dir=cache_dir, client=client)

    def write(directory: Path) -> ExportManifest:
        if precision == "fp32":
            return write_fp32(directory)
        manifest = write_int8(write_fp32, directory, gate=gate, client=client)
        for path in directory.iterdir():
            path.chmod(0o644)  # onnx writes weights 0600: other users (Lambda's) must read them
        return manifest

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


def _family(
    source: str, *, weights: str | None, cache_dir: Path, client: s3.S3Client | None
) -> Callable[[Path], ExportManifest]:
    """The loaded model, as a function that writes its fp32 export into a directory."""
    if source.startswith(OPEN_CLIP):
        try:
            from image_search.model import export_open_clip
        except ImportError as exc:
            raise ModelLoadError(
                f"open_clip models are exported in the export environment: `pip install -r "
                f"requirements-export.txt` (or `make export-venv`, then .venv-export/bin/python "
                f"-m image_search export ...): {exc}"
            ) from exc
        return export_open_clip.load(source.removeprefix(OPEN_CLIP), weights=weights)
    if weights is not None:
        raise ConfigError("--weights is for open_clip models (--model open_clip:ARCH)")
    try:
        from image_search.model import export_transformers
    except ImportError as exc:
        raise ModelLoadError(
            f"export needs torch and transformers (pip install -r requirements.txt): {exc}"
        ) from exc
    return export_transformers.load(source, cache_dir=cache_dir, client=client)


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
