"""Stage 2, one shard: download, decode and embed its images, save the vectors, their photo
fields (read from the same bytes) and a report.

Idempotent: a shard whose result is already saved is not embedded again, so an interrupted
build resumes from its finished shards, whichever engine runs it. A saved result is checked first
(build/shard_check.py, against this model's width): one that does not match its shard is embedded
again in the same run, and the new result replaces it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import Skipped
from image_search.build import work
from image_search.build.fetch import decoded_batches
from image_search.build.options import BuildOptions
from image_search.build.shard_check import BadResultError, check_result
from image_search.build.shards import Shard
from image_search.model.embedder import Embedder
from image_search.model.photo_fields import PhotoFields
from image_search.model.vectors import Vectors
from image_search.storage import s3

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShardOutcome:
    result: work.ShardResult
    embedded: int  # images this call embedded
    resumed: bool  # the result was already saved: nothing was embedded again

    def summary(self) -> dict[str, object]:
        """What a Lambda shard returns: small, since Step Functions gathers one per shard."""
        return {
            "shard_id": self.result.shard_id,
            "embedded": self.embedded,
            "skipped": len(self.result.skipped),
            "resumed": self.resumed,
        }


def embed_shard(
    where: IndexLocation,
    options: BuildOptions,
    shard: Shard,
    *,
    plan_id: str,
    embedder: Embedder,
    progress: Callable[[int], None] | None = None,
) -> ShardOutcome:
    """Embed ``shard`` unless its result exists; either way, return its result."""
    saved = _saved(where, shard, embedder=embedder)
    if saved.result is not None:
        if progress is not None:
            progress(len(shard.objects))
        return ShardOutcome(result=saved.result, embedded=0, resumed=True)

    started = time.monotonic()
    embedded: list[s3.S3Object] = []
    fields: list[PhotoFields] = []
    parts: list[Vectors] = []
    skipped: list[Skipped] = []
    batches = decoded_batches(
        shard.objects,
        client=where.client,
        bucket=where.bucket,
        options=options,
        batch_size=embedder.batch_size,
    )
    for batch, failures in batches:
        skipped.extend(failures)
        if batch:
            parts.append(embedder.embed_images([one.image for one in batch]))
            embedded.extend(one.obj for one in batch)
            fields.extend(one.fields for one in batch)
        if progress is not None:
            progress(len(batch) + len(failures))
    vectors = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    result = work.save_result(
        where,
        result=work.ShardResult(
            shard_id=shard.shard_id,
            model=embedder.identity,
            plan_id=plan_id,
            vectors_key="",
            rows=work.Rows.of(embedded),
            fields=work.FieldRows.of(fields),
            skipped=skipped,
            seconds=round(time.monotonic() - started, 3),
        ),
        vectors=vectors.astype(np.float32, copy=False),
        # Overwritten rather than deleted first: a shard may only write its folder (template.yaml).
        replace=saved.refused,
    )
    LOG.info(
        "shard %s: %d embedded, %d skipped in %.1f s",
        shard.shard_id,
        len(embedded),
        len(skipped),
        result.seconds,
    )
    return ShardOutcome(result=result, embedded=len(embedded), resumed=False)


def _saved(where: IndexLocation, shard: Shard, *, embedder: Embedder) -> _Saved:
    """The shard's saved result, if any, and whether it is one this model made for this shard."""
    try:
        done = work.load_result(where, shard_id=shard.shard_id)
        if done is None:
            return _Saved(None, refused=False)
        check_result(where, shard, done, model=embedder.identity, dim=embedder.dim)
    except (BadResultError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        LOG.warning(
            "shard %s: its saved result is refused (%s); embedding it again", shard.shard_id, exc
        )
        return _Saved(None, refused=True)
    return _Saved(done, refused=False)


@dataclass(frozen=True, slots=True)
class _Saved:
    result: work.ShardResult | None  # a result that checks out
    refused: bool  # a result is saved but does not: the new one replaces it
