"""Fresh in seconds, the whole way (issue 25): an upload to the bucket → S3's notification (moto
sends it for real) → SQS → the ingest consumer → a segment → the service's next poll → the
image answers searches; a deletion goes the same way and the image is gone from every route."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from image_search.config import get_settings
from image_search.ingest.batch import IngestReport
from image_search.ingest.consumer import consume, sqs_client, total
from image_search.model.factory import embedder_for
from image_search.serve.service import get_service
from image_search.storage import s3
from tests.integration.test_segments_api import keys, wait_for_segments
from tests.support.buckets import published_bucket
from tests.support.factories import encode, png_bytes, random_image
from tests.support.queues import events_queue
from tests.support.service import make_api, point_at_index

LAYOUT = {f"animals/{n}.png": png_bytes(n) for n in range(4)} | {
    "nature/leaf.png": png_bytes(20),
    "nature/tree.png": png_bytes(21),
}


@pytest.fixture
def served(
    s3_endpoint: str, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A built bucket, its events' queue, and the settings of a service polling every 50 ms."""
    bucket = published_bucket(LAYOUT, model=tiny_model, cache=tmp_path / "build-cache")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", s3_endpoint)
    monkeypatch.setenv("IMAGE_SEARCH_POLL_SECONDS", "0.05")
    monkeypatch.setenv("IMAGE_SEARCH_INGEST_WINDOW_SECONDS", "0")
    point_at_index(monkeypatch, bucket=bucket, model=tiny_model, cache=tmp_path)
    queue = events_queue(sqs_client("http://queue"), s3.make_client(), bucket)
    yield bucket, queue
    get_settings.cache_clear()
    get_service.cache_clear()


def ingest(queue: str) -> IngestReport:
    settings = get_settings()
    reports = consume(
        settings,
        queue_url=queue,
        client=s3.make_client(),
        sqs=sqs_client(queue),
        embedder=embedder_for(settings),
        once=True,
    )
    return total(reports)


def test_an_upload_is_searchable_and_a_deletion_gone_through_the_events(served) -> None:  # type: ignore[no-untyped-def]
    bucket, queue = served
    api = make_api()
    assert wait_for_segments(api, 0)["count"] == len(LAYOUT)
    client = s3.make_client()

    photo = encode(random_image(80), "JPEG")
    started = time.monotonic()
    client.put_object(Bucket=bucket, Key="animals/new upload.jpg", Body=photo)
    assert ingest(queue).added == 1
    health = wait_for_segments(api, 1)
    took = time.monotonic() - started
    assert health["count"] == len(LAYOUT) + 1
    found = api.post(
        "/image_search/search_by_image", files={"file": ("p.jpg", photo)}, data={"k": 3}
    )
    assert keys(found)[0] == "animals/new upload.jpg"
    assert found.json()[0]["score"] == pytest.approx(1.0, abs=1e-4)
    similar = api.post("/image_search/similar", json={"key": "animals/new upload.jpg", "k": 3})
    assert similar.status_code == 200 and "animals/new upload.jpg" not in keys(similar)
    text = api.post("/image_search/search", json={"query": "a photo", "k": 50, "folder": "*"})
    assert "animals/new upload.jpg" in keys(text)
    print(f"upload → searchable here: {took:.2f} s")  # the poll, ingest and the service's load

    client.delete_object(Bucket=bucket, Key="animals/1.png")
    assert ingest(queue).deleted == 1
    assert wait_for_segments(api, 2)["count"] == len(LAYOUT)
    answers = [
        api.post("/image_search/search", json={"query": "a photo", "k": 50, "folder": "*"}),
        api.post(
            "/image_search/search_by_image", files={"file": ("p.png", LAYOUT["animals/1.png"])}
        ),
        api.post("/image_search/similar", json={"key": "animals/0.png", "k": 50}),
        api.get("/image_search/folders"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert "animals/1.png" not in answer.text  # no key, no URL
    gone = api.post("/image_search/similar", json={"key": "animals/1.png"})
    assert gone.status_code == 404
