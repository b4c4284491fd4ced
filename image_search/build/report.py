"""What a build did, for the command line, the Lambda result and the logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from image_search.artefacts.manifest import Skipped

# Skipped objects listed in a summary (all of them are in the published metadata).
SUMMARY_SKIPPED = 20


@dataclass(kw_only=True)
class BuildReport:
    build_id: str | None = None
    complete: bool = True
    published: bool = False
    count: int = 0
    added: int = 0
    updated: int = 0
    reused: int = 0
    removed: int = 0
    embedded: int = 0
    # Vectors taken from shards an earlier, interrupted run of this build had finished.
    resumed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    index_type: str | None = None
    duplicate_groups: int | None = None  # None: not computed (nothing published, or it failed)
    seconds: float = 0.0

    @property
    def state(self) -> str:
        return "published" if self.published else ("unchanged" if self.complete else "partial")

    def summary(self) -> dict[str, Any]:
        """The counts as one JSON-able dict, with the first skipped objects as examples."""
        return {
            "state": self.state,
            "build_id": self.build_id,
            "complete": self.complete,
            "published": self.published,
            "count": self.count,
            "added": self.added,
            "updated": self.updated,
            "reused": self.reused,
            "removed": self.removed,
            "embedded": self.embedded,
            "resumed": self.resumed,
            "skipped": len(self.skipped),
            "skipped_examples": [s.model_dump() for s in self.skipped[:SUMMARY_SKIPPED]],
            "index_type": self.index_type,
            "duplicate_groups": self.duplicate_groups,
            "seconds": round(self.seconds, 1),
        }

    def line(self) -> str:
        """The summary on one line: ``published build=… count=… …``."""
        fields = self.summary()
        state = fields.pop("state")
        for detail in (
            "complete",
            "published",
            "skipped_examples",
            "index_type",
            "duplicate_groups",
        ):
            fields.pop(detail)
        return " ".join([state, *(f"{name}={value}" for name, value in fields.items())])
