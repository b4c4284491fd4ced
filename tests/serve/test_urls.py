"""Result URLs: signed locally, reused for a tenth of their lifetime, never past it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from image_search.serve import urls
from image_search.storage import s3


class CountingClient:
    """A real boto3 client that counts the URLs it signs (signing needs no network)."""

    def __init__(self) -> None:
        self.client = s3.make_client()
        self.signed = 0

    def generate_presigned_url(self, *args: object, **kwargs: object) -> str:
        self.signed += 1
        return str(self.client.generate_presigned_url(*args, **kwargs))


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingClient:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return CountingClient()


def test_urls_are_reused_within_a_tenth_of_their_lifetime(counting, monkeypatch) -> None:
    clock = [1000.0]
    make = urls.ImageUrls(
        lambda: counting, bucket="b", mode="presigned", expires=3600, timer=lambda: clock[0]
    )
    first = make("animals/cat.png")
    clock[0] += 359
    assert make("animals/cat.png") == first and counting.signed == 1
    make("animals/dog.png")
    assert counting.signed == 2
    clock[0] += 2  # 361 s: past a tenth of 3600 s, so signed afresh
    make("animals/cat.png")
    assert counting.signed == 3
    assert parse_qs(urlparse(first).query)["X-Amz-Expires"] == ["3600"]


def test_public_urls_are_unsigned(counting) -> None:
    make = urls.ImageUrls(lambda: counting, bucket="b", mode="public", expires=3600)
    url = make("nature/tree 1.png")
    assert "?" not in url and url.endswith("/nature/tree%201.png")
    assert make("nature/tree 1.png") == url and counting.signed == 1
