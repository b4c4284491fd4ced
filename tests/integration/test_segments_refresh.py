"""Segments arriving while the service runs: picked up by polling current.json without loading
the build again, only the new segment fetched, requests answered from the old view meanwhile;
cursors keep their pages across new segments and expire only when the build is replaced."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from image_search.artefacts import loader
from image_search.artefacts.location import new_build_id
from image_search.artefacts.publish import publish
from image_search.config import get_settings
from image_search.index import faiss_index
from image_search.serve.service import get_service
from image_search.storage import s3
from tests.integration.test_segments_api import POLL, wait_for_segments
from tests.support.segments import add_segment, copy_bucket, where
from tests.support.service import make_api, point_at_index, wait_for_build


@pytest.fixture
def bucket(synthetic, tiny_model: Path, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def,override]
    """A copy of the session's flat synthetic build, served with a short poll."""
    copy = copy_bucket(synthetic("flat"), prefix="index/")
    monkeypatch.setenv("IMAGE_SEARCH_POLL_SECONDS", str(POLL))
    point_at_index(monkeypatch, bucket=copy, model=tiny_model, cache=tmp_path)
    yield copy
    get_settings.cache_clear()
    get_service.cache_clear()


class Calls:
    """What the service asked the loader for, the real loader answering."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.builds: list[str] = []
        self.segments: list[list[str]] = []
        self.pointer_reads: list[object] = []
        self.hold = threading.Event()
        self.hold.set()
        real_build, real_segments = loader.load_build, loader.load_segments
        real_pointer = loader.read_pointer_if_changed

        def load_build(where, *, pointer, cache_dir):  # type: ignore[no-untyped-def]
            self.builds.append(pointer.build_id)
            return real_build(where, pointer=pointer, cache_dir=cache_dir)

        def load_segments(where, refs, *, base):  # type: ignore[no-untyped-def]
            self.hold.wait(60)
            self.segments.append([ref.segment_id for ref in refs])
            return real_segments(where, refs, base=base)

        def read_pointer_if_changed(where, *, etag):  # type: ignore[no-untyped-def]
            found = real_pointer(where, etag=etag)
            self.pointer_reads.append(found)
            return found

        monkeypatch.setattr(loader, "load_build", load_build)
        monkeypatch.setattr(loader, "load_segments", load_segments)
        monkeypatch.setattr(loader, "read_pointer_if_changed", read_pointer_if_changed)


def new_ids(pointer, before: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [ref.segment_id for ref in pointer.segments[before:]]


def test_polling_fetches_only_new_segments_and_never_the_build_again(bucket, monkeypatch) -> None:
    calls = Calls(monkeypatch)
    api = make_api()
    assert api.get("/health").json()["segments"] == 0
    assert len(calls.builds) == 1 and calls.segments == []
    vector = np.random.default_rng(1).normal(size=16)
    first = add_segment(bucket, adds={"alpha/new_1.jpg": vector})
    wait_for_segments(api, 1)
    second = add_segment(bucket, adds={"alpha/new_2.jpg": -vector}, deletes=["alpha/new_1.jpg"])
    wait_for_segments(api, 2)
    assert calls.segments == [new_ids(first, 0), new_ids(second, 1)]
    assert len(calls.builds) == 1  # the build was loaded once, at the start
    # With nothing new, a check is a conditional GET answered 304.
    get_service().index.refresh()
    assert calls.pointer_reads[-1] is s3.UNCHANGED
    # A request that finds a check due answers from the view it has while the check runs.
    calls.hold.clear()
    add_segment(bucket, adds={"alpha/new_3.jpg": vector})
    for _ in range(5):
        answer = api.post("/image_search/search", json={"query": "x", "prefix": "alpha/new_"})
        assert answer.status_code == 200
        assert [hit["key"] for hit in answer.json()] == ["alpha/new_2.jpg"]
        time.sleep(POLL)
    assert get_service().current().segment_ids == tuple(
        second.segments[i].segment_id for i in (0, 1)
    )
    calls.hold.set()
    wait_for_segments(api, 3)
    answer = api.post("/image_search/search", json={"query": "x", "prefix": "alpha/new_"})
    assert sorted(hit["key"] for hit in answer.json()) == ["alpha/new_2.jpg", "alpha/new_3.jpg"]


def publish_new_base(bucket: str) -> str:
    """A new build of the same rows (as a compaction would publish), replacing the pointer."""
    found = loader.read_tagged_pointer(where(bucket))
    assert found is not None
    pointer, etag = found
    metadata, vectors = loader.load_vectors(where(bucket), pointer=pointer)
    metadata = metadata.model_copy(update={"build_id": new_build_id()})
    index = faiss_index.build(vectors, index_type="flat")
    publish(
        where(bucket), metadata=metadata, index=index, vectors=vectors, keep_builds=3,
        pointer_etag=etag,
    )  # fmt: skip
    return metadata.build_id


def scored(query: np.ndarray, score: float) -> np.ndarray:
    """A unit vector whose cosine with the unit ``query`` is ``score``."""
    other = np.random.default_rng(3).normal(size=query.shape)
    other -= (other @ query) * query
    return score * query + np.sqrt(1 - score**2) * other / np.linalg.norm(other)


def test_cursors_page_on_across_new_segments_and_expire_with_the_build(bucket) -> None:
    api = make_api()
    body = {"positive": [{"text": "a dog on a beach"}], "folder": "gamma", "k": 25}
    ranking = api.post("/image_search/query", json={**body, "k": 60}).json()["results"]
    first = api.post("/image_search/query", json=body).json()
    assert first["results"] == ranking[:25]
    query = get_service().embedder.embed_texts(["a dog on a beach"])[0]
    gone = ranking[30]["key"]
    middle = scored(query, (ranking[35]["score"] + ranking[36]["score"]) / 2)
    adds = {"gamma/best_match.jpg": query, "gamma/middle.jpg": middle}
    add_segment(bucket, adds=adds, deletes=[gone])
    wait_for_segments(api, 1)

    second = api.post("/image_search/query", json={**body, "cursor": first["next_cursor"]})
    assert second.status_code == 200, second.text
    page = second.json()["results"]
    # The ranking the first page came from, minus the image deleted since, and without the
    # image added since (it would otherwise push every later result down a rank).
    expected = [hit["key"] for hit in ranking[25:52] if hit["key"] != gone][:25]
    assert [hit["key"] for hit in page] == expected
    assert [hit["rank"] for hit in page] == list(range(26, 51))
    fresh = api.post("/image_search/query", json={**body, "k": 60}).json()["results"]
    assert fresh[0]["key"] == "gamma/best_match.jpg" and gone not in {h["key"] for h in fresh}
    assert fresh[36]["key"] == "gamma/middle.jpg"  # 35 above it, the best match among them

    # A further page still follows on after another segment.
    add_segment(bucket, adds={"gamma/another.jpg": query})
    wait_for_segments(api, 2)
    third = api.post("/image_search/query", json={**body, "cursor": second.json()["next_cursor"]})
    assert third.status_code == 200
    assert [hit["rank"] for hit in third.json()["results"]][0] == 51

    # A new build folds the segments in: the cursor would not follow on any more.
    wait_for_build(api, publish_new_base(bucket))
    expired = api.post("/image_search/query", json={**body, "cursor": second.json()["next_cursor"]})
    assert expired.status_code == 409
    assert "without a cursor" in expired.json()["detail"]


def test_a_damaged_segment_is_refused_and_the_ones_before_it_keep_serving(
    bucket, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("IMAGE_SEARCH_POLL_SECONDS", "3600")  # checks only when asked below
    api = make_api()
    index = get_service().index
    vector = np.random.default_rng(2).normal(size=16)
    add_segment(bucket, adds={"alpha/new_1.jpg": vector})
    index.refresh()
    broken = add_segment(bucket, adds={"alpha/new_2.jpg": vector}, deletes=["alpha/new_1.jpg"])
    damaged = broken.segments[-1].segment_id
    # Rows that are not unit vectors, under the checksum the document records: refused as a
    # shard's result would be (artefacts/vector_file.py), never served.
    s3.make_client().put_object(
        Bucket=bucket,
        Key=where(bucket).segment_vectors_key(damaged),
        Body=np.zeros((1, 16), dtype=np.float32).tobytes(),
    )
    add_segment(bucket, adds={"alpha/new_3.jpg": vector})
    index.refresh()
    health = api.get("/health").json()
    assert health["segments"] == 1 and damaged in health["problem"]
    answer = api.post("/image_search/search", json={"query": "x", "prefix": "alpha/new_"})
    assert answer.status_code == 200
    # The damaged segment's delete and the later segment's add wait with it.
    assert [hit["key"] for hit in answer.json()] == ["alpha/new_1.jpg"]
