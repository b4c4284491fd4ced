"""The served build's near-duplicate groups: read on first use, split at the asked score,
narrowed to a folder or prefix, one page at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from botocore.exceptions import ClientError
from cachetools import LRUCache

from image_search.artefacts import duplicates
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.view import LoadedView
from image_search.config import Settings
from image_search.errors import DuplicatesUnavailableError, IndexNotReadyError
from image_search.index.duplicates import Group, split, without
from image_search.index.search_index import allowed_mask
from image_search.serve.scope import Scope
from image_search.serve.urls import ImageUrls
from image_search.storage import s3

LOG = logging.getLogger(__name__)

# Images listed per group; ``size`` still counts them all. A page of groups is at most
# ``MAX_LIMIT`` × this many presigned URLs.
MAX_GROUP_IMAGES = 50
SPLITS_KEPT = 8  # min_score values whose groups stay computed


@dataclass(frozen=True, slots=True)
class GroupImage:
    key: str
    folder: str
    url: str  # where a client fetches the image: presigned or public
    score: float  # its best cosine similarity to another image of the group


@dataclass(frozen=True, slots=True)
class ImageGroup:
    size: int  # every image of the group; at most MAX_GROUP_IMAGES are listed
    score: float  # the best cosine similarity between two of its images
    images: tuple[GroupImage, ...]  # best matched first


@dataclass(frozen=True, slots=True)
class GroupPage:
    build_id: str
    bucket: str
    min_score: float  # the score the groups were formed at
    total: int  # groups matching, over every page
    offset: int
    limit: int
    groups: tuple[ImageGroup, ...]  # largest first, then best score


class DuplicateGroups:
    def __init__(
        self, settings: Settings, *, client: Callable[[], s3.S3Client], urls: ImageUrls
    ) -> None:
        self.settings = settings
        self._client = client
        self._urls = urls
        self._lock = threading.Lock()
        self._groups: tuple[str, float, list[Group]] | None = None  # build id, score, groups
        # Keyed by the view (build and segments) and the score.
        self._splits: LRUCache[tuple[str, tuple[str, ...], float], list[Group]] = LRUCache(
            maxsize=SPLITS_KEPT
        )

    def page(
        self,
        loaded: LoadedView,
        *,
        where: Scope,
        min_score: float | None,
        offset: int,
        limit: int,
    ) -> GroupPage:
        """Groups with an image inside ``where``, largest first; scores below the build's are
        raised to it (the build recorded no weaker pairs)."""
        found_at, groups = self._at(loaded, min_score)
        if where.ranges is not None:
            groups = [g for g in groups if allowed_mask(where.ranges, np.array(g.rows)).any()]
        chosen = groups[offset : offset + limit]
        return GroupPage(
            build_id=loaded.metadata.build_id,
            bucket=self.settings.bucket,
            min_score=found_at,
            total=len(groups),
            offset=offset,
            limit=limit,
            groups=tuple(self._group(loaded, group) for group in chosen),
        )

    def _at(self, loaded: LoadedView, min_score: float | None) -> tuple[float, list[Group]]:
        """The groups at ``min_score`` without the images deleted since the build (images
        added since are in no group until the next build: artefacts/view.py)."""
        build_id = loaded.metadata.build_id
        with self._lock:
            if self._groups is None or self._groups[0] != build_id:
                self._groups = (build_id, *self._read(loaded))
            _, recorded, groups = self._groups
            score = recorded if min_score is None else max(min_score, recorded)
            view = (build_id, loaded.segment_ids, score)
            parts = self._splits.get(view)
            if parts is None:
                dead = set(loaded.metadata.dead.tolist())
                parts = [
                    part
                    for group in groups
                    for alive in without(group, dead)
                    for part in split(alive, min_score=score)
                ]
                parts.sort(key=lambda g: (-len(g.rows), -g.score, g.rows[0]))
                self._splits[view] = parts
        return score, parts

    def _read(self, loaded: LoadedView) -> tuple[float, list[Group]]:
        ref = loaded.metadata.duplicates
        if ref is None:
            raise DuplicatesUnavailableError(
                f"build {loaded.metadata.build_id} has no near-duplicate groups: it was made "
                "before they were computed, or computing them failed; the next build adds them"
            )
        try:
            doc = duplicates.read(
                IndexLocation(self._client(), self.settings.bucket, self.settings.index_prefix),
                key=ref.key,
                build_id=loaded.metadata.build_id,
                cache_dir=self.settings.index_cache_dir,
            )
        except (ValueError, ClientError) as exc:
            raise IndexNotReadyError(f"the near-duplicate groups could not be read: {exc}") from exc
        return doc.min_score, duplicates.groups_of(doc, catalog=loaded.base.metadata)

    def _group(self, loaded: LoadedView, group: Group) -> ImageGroup:
        items = loaded.metadata.items
        best = group.best()
        order = sorted(
            range(len(group.rows)), key=lambda at: (-best[at], items[group.rows[at]].key)
        )
        images = []
        for at in order[:MAX_GROUP_IMAGES]:
            item = items[group.rows[at]]
            url = self._urls(item.key)
            images.append(GroupImage(key=item.key, folder=item.folder, url=url, score=best[at]))
        return ImageGroup(size=len(group.rows), score=group.score, images=tuple(images))
