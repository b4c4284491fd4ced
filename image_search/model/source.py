"""Where the CLIP weights come from: a hub id, a local directory, or an ``s3://`` directory."""

from __future__ import annotations

import logging
from pathlib import Path

from image_search.errors import ModelLoadError
from image_search.files import atomic_path
from image_search.model.onnx_manifest import MANIFEST
from image_search.storage import s3

LOG = logging.getLogger(__name__)


def resolve(source: str, *, cache_dir: Path, client: s3.S3Client | None = None) -> str:
    """A name or local path that ``from_pretrained`` can open, downloading S3 models once.

    A source written as a path must be a directory: otherwise transformers takes it for a hub id
    and answers with the hub's rules for repository names, which says nothing of the typo.
    """
    if source.startswith("s3://"):
        return str(_download_s3_dir(source, cache_dir=cache_dir, client=client))
    if looks_like_a_path(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise ModelLoadError(
                f"cannot load model {source!r}: no such directory ({path.absolute()}); "
                "check the path given as IMAGE_SEARCH_MODEL or --model"
            )
        return str(path)
    return source


def looks_like_a_path(source: str) -> bool:
    """``./m``, ``../m``, ``~/m``, ``/m`` or an existing directory; a hub id is ``org/name``."""
    return source.startswith((".", "~")) or Path(source).is_absolute() or Path(source).is_dir()


def _download_s3_dir(url: str, *, cache_dir: Path, client: s3.S3Client | None) -> Path:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    target = _inside(cache_dir, f"{bucket}/{prefix}", what=url)
    # A transformers model has a config.json, an ONNX export its manifest.
    if (target / "config.json").is_file() or (target / MANIFEST).is_file():
        return target
    client = client or s3.make_client()
    keys = [obj["Key"] for obj in s3.list_objects(client, bucket=bucket, prefix=prefix)]
    keys = [key for key in keys if not key.endswith("/")]
    if not keys:
        raise ModelLoadError(f"no model files under {url}")
    LOG.info("downloading model %s (%d files) to %s", url, len(keys), target)
    # A crash never leaves half a model that a later start would take for a complete one.
    # Keys are data from the bucket: one with "..", an empty part ("a//b") or a leading "/"
    # would write outside the cache on every host that loads the model. Refuse the model.
    names = {key: _inside(target, key[len(prefix) :], what=f"s3://{bucket}/{key}") for key in keys}
    with atomic_path(target, directory=True) as staging:
        for key in keys:
            destination = staging / names[key].relative_to(target)
            destination.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(destination))
    return target


def _inside(folder: Path, relative: str, *, what: str) -> Path:
    """``folder / relative``, refusing a name that could leave ``folder``."""
    parts = relative.rstrip("/").split("/")
    if not relative or any(part in ("", ".", "..") or "\\" in part for part in parts):
        raise ModelLoadError(f"refusing {what}: its name is not a plain relative path")
    path = folder.joinpath(*parts)
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ModelLoadError(f"refusing {what}: it would be written outside {folder}")
    return path
