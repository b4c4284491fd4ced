"""All settings, read once from the environment (prefix ``IMAGE_SEARCH_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from tempfile import gettempdir
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
# SigV4 presigned URLs cannot live longer than 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

CommaList = Annotated[list[str], NoDecode]
Runtime = Literal["auto", "onnx", "torch"]
IndexType = Literal["auto", "flat", "hnsw", "ivf-sq8", "ivf-pq"]
Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")
INDEX_TYPES: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf-sq8", "ivf-pq", "ivfpq")
# "ivfpq" was the first name of the IVF type with 8-bit scalar codes; settings and published
# builds that still say it keep working. "ivf-pq" (with the dash) is the PQ type with re-ranking.
INDEX_TYPE_ALIASES = {"ivfpq": "ivf-sq8"}


def canonical_index_type(name: str) -> str:
    return INDEX_TYPE_ALIASES.get(name, name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGE_SEARCH_", extra="ignore")

    bucket: str = Field(min_length=3, max_length=63)
    folders: CommaList = []
    index_prefix: str = Field(default="index/", validate_default=True)
    model: str = DEFAULT_MODEL
    model_cache_dir: Path = Path(gettempdir()) / "image-search-models"
    device: str = "auto"
    # auto: ONNX Runtime when the model is an export (or has one in its onnx/), else torch.
    runtime: Runtime = "auto"
    # ONNX Runtime threads per model call; 0 = one per core (measured best: docs in the README).
    onnx_threads: int = Field(default=0, ge=0, le=256)
    batch_size: int = Field(default=32, ge=1, le=1024)
    download_workers: int = Field(default=8, ge=1, le=64)
    index_type: IndexType = "auto"
    keep_builds: int = Field(default=3, ge=1)
    # Builds replaced less than this long ago are not pruned: twice template.yaml's refresh
    # interval (IMAGE_SEARCH_REFRESH_SECONDS, 300 s), so every server has moved on first.
    prune_grace_seconds: float = Field(default=600.0, ge=0)
    # A running build renews its lease every third of this; a killed one blocks the next build
    # for at most this long (storage/lease.py). On Step Functions, where nothing runs between
    # the states to renew it, the plan takes it for the whole execution (template.yaml).
    build_lease_seconds: float = Field(default=300.0, ge=1)
    # Near-duplicates: the lowest cosine a build records (see docs/duplicates.md for the choice).
    duplicate_score: float = Field(default=0.95, ge=0.5, le=1.0)
    # Images per shard: the unit of work an engine hands out and of resuming an interrupted build.
    shard_size: int = Field(default=1000, ge=1, le=100_000)
    # Ingest (python -m image_search ingest): messages gathered into one segment, and how long
    # to wait for more before publishing. On Lambda, the event source mapping batches instead
    # (template.yaml's IngestBatchSize and IngestBatchWindowSeconds).
    ingest_batch_size: int = Field(default=100, ge=1, le=10_000)
    ingest_window_seconds: float = Field(default=2.0, ge=0, le=300)
    engine: Engine = "local"
    # None: start a local Ray; "auto" or "ray://host:10001": join that cluster.
    ray_address: str | None = None
    ray_workers: int = Field(default=0, ge=0)  # 0: one per GPU, or per ray_cpus_per_worker CPUs
    ray_cpus_per_worker: float = Field(default=1.0, gt=0)
    ray_gpus_per_worker: float | None = Field(default=None, ge=0)  # None: 1 if there are GPUs

    api_prefix: str = ""
    api_keys: CommaList = []
    cors_origins: CommaList = []
    url_mode: Literal["presigned", "public"] = "presigned"
    presign_expires: int = Field(default=3600, ge=1)
    max_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_concurrent_images: int = Field(default=2, ge=1, le=64)
    refresh_seconds: float = Field(default=300.0, ge=0)
    # How often the service checks current.json for new segments and builds: a conditional GET
    # (304 when unchanged), cheap enough to run every few seconds (serve/lifecycle.py).
    poll_seconds: float = Field(default=10.0, ge=0)
    # Images held in segments (adds and deletes) past which a compaction, a build folding them
    # into a new base, pays off: every search scores each segment row (bench section 11 measured
    # the cost; docs/performance.md). The service logs when its view passes it; a scheduler or
    # ingest may start a build then.
    compact_after_images: int = Field(default=10_000, ge=1)
    index_cache_dir: Path = Path(gettempdir()) / "image-search-index"
    text_cache_size: int = Field(default=1024, ge=0)  # text query vectors kept (0 = none)

    @field_validator("index_type", mode="before")
    @classmethod
    def _index_type_alias(cls, value: object) -> object:
        return canonical_index_type(value) if isinstance(value, str) else value

    @field_validator("folders", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("folders", mode="after")
    @classmethod
    def _strip_slashes(cls, value: list[str]) -> list[str]:
        return [folder.strip("/") for folder in value]

    @field_validator("index_prefix", mode="after")
    @classmethod
    def _prefix_is_a_folder_of_its_own(cls, value: str, info: ValidationInfo) -> str:
        """The index prefix must be a folder apart from the images: pruning deletes old builds
        under it, and an empty prefix or an indexed folder would put user images there."""
        value = value.strip("/")
        if not value:
            raise ValueError(
                "must name a folder for the index (e.g. index/), not the bucket root: builds "
                "would go under builds/, next to the images"
            )
        prefix = f"{value}/"
        for folder in info.data.get("folders") or []:
            inside = f"{folder}/"
            if prefix.startswith(inside) or inside.startswith(prefix):
                raise ValueError(
                    f"{prefix!r} overlaps the indexed folder {folder!r}; "
                    "choose a prefix outside IMAGE_SEARCH_FOLDERS"
                )
        return prefix

    @field_validator("api_prefix", mode="after")
    @classmethod
    def _normalise_api_prefix(cls, value: str) -> str:
        value = value.strip("/")
        return f"/{value}" if value else ""

    @field_validator("presign_expires", mode="after")
    @classmethod
    def _cap_presign(cls, value: int) -> int:
        return min(value, MAX_PRESIGN_SECONDS)


class LogSettings(BaseSettings):
    """How logs are written; apart from ``Settings`` so logging is set up before a bad setting
    (a missing bucket) has to be reported through it."""

    model_config = SettingsConfigDict(env_prefix="IMAGE_SEARCH_", extra="ignore")

    # auto: JSON lines and EMF metrics on Lambda, readable text elsewhere.
    log_format: Literal["auto", "text", "json"] = "auto"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests set the environment first and call ``cache_clear()``."""
    return Settings()  # type: ignore[call-arg]  # bucket comes from the environment
