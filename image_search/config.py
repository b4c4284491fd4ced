"""All settings, read once from the environment (prefix ``IMAGE_SEARCH_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from tempfile import gettempdir
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
# SigV4 presigned URLs cannot live longer than 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

CommaList = Annotated[list[str], NoDecode]
IndexType = Literal["auto", "flat", "hnsw", "ivf-sq8", "ivf-pq"]
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
    index_prefix: str = "index/"
    model: str = DEFAULT_MODEL
    model_cache_dir: Path = Path(gettempdir()) / "image-search-models"
    device: str = "auto"
    batch_size: int = Field(default=32, ge=1, le=1024)
    download_workers: int = Field(default=8, ge=1, le=64)
    index_type: IndexType = "auto"
    keep_builds: int = Field(default=3, ge=1)
    checkpoint_seconds: float = Field(default=60.0, gt=0)

    api_prefix: str = ""
    api_keys: CommaList = []
    cors_origins: CommaList = []
    url_mode: Literal["presigned", "public"] = "presigned"
    presign_expires: int = Field(default=3600, ge=1)
    max_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    refresh_seconds: float = Field(default=300.0, ge=0)
    index_cache_dir: Path = Path(gettempdir()) / "image-search-index"

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
    def _prefix_ends_with_slash(cls, value: str) -> str:
        value = value.strip("/")
        return f"{value}/" if value else ""

    @field_validator("api_prefix", mode="after")
    @classmethod
    def _normalise_api_prefix(cls, value: str) -> str:
        value = value.strip("/")
        return f"/{value}" if value else ""

    @field_validator("presign_expires", mode="after")
    @classmethod
    def _cap_presign(cls, value: int) -> int:
        return min(value, MAX_PRESIGN_SECONDS)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests set the environment first and call ``cache_clear()``."""
    return Settings()  # type: ignore[call-arg]  # bucket comes from the environment
