"""What the build stages read of the settings: read once at the edge (the command line, a Lambda
handler, the demo), then passed down with the index's location."""

from __future__ import annotations

from dataclasses import dataclass

from image_search.config import Settings


@dataclass(frozen=True)
class BuildOptions:
    folders: tuple[str, ...]  # only these top-level folders; empty: every folder
    index_type: str
    shard_size: int
    keep_builds: int
    prune_grace_seconds: float
    duplicate_score: float
    download_workers: int
    max_image_pixels: int
    build_lease_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> BuildOptions:
        return cls(
            folders=tuple(settings.folders),
            index_type=settings.index_type,
            shard_size=settings.shard_size,
            keep_builds=settings.keep_builds,
            prune_grace_seconds=settings.prune_grace_seconds,
            duplicate_score=settings.duplicate_score,
            download_workers=settings.download_workers,
            max_image_pixels=settings.max_image_pixels,
            build_lease_seconds=settings.build_lease_seconds,
        )
