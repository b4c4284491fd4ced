"""BuildOptions: the slice of the settings the stages read, taken once at the edge."""

from __future__ import annotations

from dataclasses import fields

from image_search.build.options import BuildOptions
from image_search.config import Settings


def test_options_carry_each_setting_the_stages_read() -> None:
    same: dict[str, object] = {
        "index_type": "hnsw",
        "shard_size": 7,
        "keep_builds": 5,
        "prune_grace_seconds": 60.0,
        "duplicate_score": 0.9,
        "download_workers": 3,
        "max_image_pixels": 1234,
        "build_lease_seconds": 42.0,
    }
    settings = Settings(bucket="photos", folders="animals,nature", **same)  # type: ignore[arg-type]
    options = BuildOptions.of(settings)
    assert options == BuildOptions(folders=("animals", "nature"), **same)  # type: ignore[arg-type]
    # Every option is the setting of the same name.
    assert {f.name for f in fields(BuildOptions)} <= set(Settings.model_fields)
