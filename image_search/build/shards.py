"""Cutting the images to embed into shards whose ids name their content.

A shard's id is a hash of the model and its objects' keys and ETags, so planning again over the
same images gives the same ids and finds the results an interrupted build already saved (a
``--full`` build salts its ids with its plan's, so it finds none and embeds everything). The
cut points depend on the keys themselves (a key whose hash hits a mark ends a shard), not on
positions, so an image added or removed since the interruption changes one shard, not every
shard after it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from image_search.storage.s3 import S3Object

ID_LENGTH = 24


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    objects: list[S3Object]


def cut(todo: list[S3Object], *, size: int, model: str, salt: str = "") -> list[Shard]:
    """``todo`` in order, cut into shards of ``size`` objects on average (``size/2`` to
    ``2·size``)."""
    half = max(1, size // 2)
    shards: list[Shard] = []
    current: list[S3Object] = []
    for obj in todo:
        current.append(obj)
        if len(current) >= 2 * size or (len(current) >= half and _mark(obj.key) % half == 0):
            shards.append(_shard(current, model=model, salt=salt))
            current = []
    if current:
        shards.append(_shard(current, model=model, salt=salt))
    return shards


def shard_id(objects: list[S3Object], *, model: str, salt: str = "") -> str:
    """The id of a shard of ``objects``; the merge recomputes it to check a shard's input."""
    listed = [[obj.key, obj.etag, obj.size] for obj in objects]
    content = json.dumps([model, listed, salt] if salt else [model, listed], ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()[:ID_LENGTH]


def _shard(objects: list[S3Object], *, model: str, salt: str) -> Shard:
    return Shard(shard_id=shard_id(objects, model=model, salt=salt), objects=objects)


def _mark(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
