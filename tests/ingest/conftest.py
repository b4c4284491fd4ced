"""Fixtures for ingest: a bucket with a published build (made with the counting embedder, so no
torch), an SQS queue the bucket's own notifications go to (moto sends them for real), and the
consumer run over it until the queue is empty."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from image_search.artefacts.loader import read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.manifest import Pointer
from image_search.artefacts.segments import Segment, load_segment
from image_search.build.pipeline import run_build
from image_search.config import Settings
from image_search.ingest.batch import IngestReport
from image_search.ingest.consumer import consume, sqs_client, total
from image_search.storage import s3
from tests.support.embedders import CountingEmbedder
from tests.support.factories import png_bytes
from tests.support.queues import drain, events_queue

PREFIX = "index/"
BASE = {f"animals/{n}.png": png_bytes(n) for n in range(3)} | {"nature/0.png": png_bytes(9)}


@pytest.fixture(scope="module")
def sqs_endpoint(s3_endpoint: str) -> Iterator[str]:
    """moto's one server answers SQS too; boto3 finds it through AWS_ENDPOINT_URL_SQS."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL_SQS", s3_endpoint)
        yield s3_endpoint


@pytest.fixture(scope="module")
def module_client(s3_endpoint: str) -> s3.S3Client:
    return s3.make_client()


@dataclass
class Indexed:
    """A bucket with a published build, and its events' queue."""

    where: IndexLocation
    queue_url: str
    sqs: Any
    embedder: CountingEmbedder
    settings: Settings

    def put(self, key: str, data: bytes) -> None:
        self.where.client.put_object(Bucket=self.where.bucket, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.where.client.delete_object(Bucket=self.where.bucket, Key=key)

    def ingest(self, **kwargs: Any) -> IngestReport:
        """Run the consumer until the queue has nothing left to deliver; its batches added up
        (the events of ingest's own writes under the index prefix come back, ignored)."""
        return total(self.consume(**kwargs))

    def consume(self, **kwargs: Any) -> list[IngestReport]:
        return consume(
            self.settings,
            queue_url=self.queue_url,
            client=self.where.client,
            sqs=kwargs.pop("sqs", self.sqs),
            embedder=kwargs.pop("embedder", self.embedder),
            once=True,
            **kwargs,
        )

    def pointer(self) -> Pointer:
        pointer = read_pointer(self.where)
        assert pointer is not None
        return pointer

    def build(self, *, full: bool = False) -> Any:
        return run_build(self.settings, client=self.where.client, embedder=self.embedder, full=full)

    def segments(self) -> list[tuple[Segment, np.ndarray]]:
        """The pointer's segments, loaded and checked as a server would."""
        return [
            load_segment(self.where, ref, model=self.embedder.identity, dim=self.embedder.dim)
            for ref in self.pointer().segments or []
        ]

    def receive(self) -> list[dict[str, Any]]:
        """The messages waiting now, received and left to come back (visibility 0)."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        return list(answer.get("Messages", []))


@pytest.fixture
def make_indexed(sqs_endpoint: str, module_client: s3.S3Client) -> Callable[..., Indexed]:
    def make(
        *, visibility: int = 30, layout: dict[str, bytes] | None = None, purge: bool = True
    ) -> Indexed:
        """Images put, their queue made, a build published; with ``purge``, the events of all
        that (S3's test message, the build's own files) are dropped from the queue."""
        bucket = f"ingest-{uuid.uuid4().hex[:12]}"
        module_client.create_bucket(Bucket=bucket)
        for key, data in (BASE if layout is None else layout).items():
            module_client.put_object(Bucket=bucket, Key=key, Body=data)
        settings = Settings(
            bucket=bucket, download_workers=2, ingest_window_seconds=0, prune_grace_seconds=0
        )  # type: ignore[call-arg]
        sqs = sqs_client("http://queue")
        indexed = Indexed(
            where=IndexLocation(module_client, bucket, PREFIX),
            queue_url=events_queue(sqs, module_client, bucket, visibility=visibility),
            sqs=sqs,
            embedder=CountingEmbedder(),
            settings=settings,
        )
        assert indexed.build().published
        if purge:
            drain(sqs, indexed.queue_url)
        return indexed

    return make


@pytest.fixture
def indexed(make_indexed: Callable[..., Indexed]) -> Indexed:
    return make_indexed()
