"""A build pruned while a warm server still serves it: ivf-pq reads its re-rank codes lazily,
so queries find them gone. They answer 503 and the server loads the current build at once;
/health says so too, never 200 while searches fail (issue 21, item 9)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from image_search.artefacts.loader import read_pointer
from image_search.artefacts.location import IndexLocation, new_build_id
from image_search.index import rerank
from image_search.storage import s3
from tests.support.buckets import put
from tests.support.service import make_api, point_at_index
from tests.support.synthetic import items


def republish_and_prune(client, bucket: str) -> str:  # type: ignore[no-untyped-def]
    """The served build's files copied under a new build id, the pointer moved to it, the old
    build deleted: what a publish with KEEP_BUILDS=1 (or an old prune) does."""
    where = IndexLocation(client, bucket, "index/")
    old = read_pointer(where)
    assert old is not None
    new_id = new_build_id()
    keys = [
        o["Key"]
        for o in s3.list_objects(client, bucket=bucket, prefix=f"index/builds/{old.build_id}/")
    ]
    for key in keys:
        data = s3.get_bytes(client, bucket=bucket, key=key)
        if key.endswith(".json"):  # the documents name their build
            data = data.replace(old.build_id.encode(), new_id.encode())
        put(client, bucket, key.replace(old.build_id, new_id), data)
    moved = old.model_validate_json(old.model_dump_json().replace(old.build_id, new_id))
    put(client, bucket, "index/current.json", moved.model_dump_json().encode())
    s3.delete_keys(client, bucket=bucket, keys=keys)
    return new_id


@pytest.fixture
def ivf_pq_bucket(synthetic, client) -> str:  # type: ignore[no-untyped-def]
    """A bucket of its own holding a copy of the session's ivf-pq build (publishing one takes a
    minute; the session's is shared read-only, and these tests delete files)."""
    source = synthetic("ivf-pq")
    bucket = f"pruned-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    for obj in s3.list_objects(client, bucket=source, prefix="index/"):
        client.copy_object(
            Bucket=bucket, Key=obj["Key"], CopySource={"Bucket": source, "Key": obj["Key"]}
        )
    return bucket


@pytest.fixture
def served(ivf_pq_bucket: str, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    # As on Lambda between invocations: the background fill of the codes makes no progress, so
    # the codes of the lists no query has touched are still in S3 only.
    monkeypatch.setattr(rerank.Rerank, "fill_in_background", lambda self: None)
    bucket = ivf_pq_bucket
    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path)
    monkeypatch.setenv("IMAGE_SEARCH_REFRESH_SECONDS", "3600")  # no check would come in time
    return bucket, make_api()


def test_a_pruned_build_answers_503_then_the_current_one(client, served) -> None:
    bucket, api = served
    first = api.get("/health").json()["build_id"]
    assert api.post("/image_search/search", json={"query": "a", "k": 3}).status_code == 200
    new_id = republish_and_prune(client, bucket)

    statuses = []
    for key in [item.key for item in items()[::400]]:  # rows all over the index: many lists
        response = api.post("/image_search/similar", json={"key": key, "k": 10})
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert "gone from S3" in response.json()["detail"]
            assert response.headers["Retry-After"]
    assert 503 in statuses and 500 not in statuses and statuses[-1] == 200, statuses
    assert api.get("/health").json()["build_id"] == new_id != first


def test_health_checks_the_files_a_build_still_reads(client, served) -> None:
    bucket, api = served
    assert api.get("/health").status_code == 200
    new_id = republish_and_prune(client, bucket)
    first = api.get("/health")
    assert first.status_code == 503 and "gone from S3" in first.json()["detail"]
    after = api.get("/health")
    assert after.status_code == 200 and after.json()["build_id"] == new_id
