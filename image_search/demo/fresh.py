"""Fresh in seconds, in the demo: the embedded S3 sends its bucket's changes to an SQS queue on
the same server (moto delivers S3's notifications for real), and ingest runs in a thread beside
the server, as the ingest function does on AWS. A photo copied into the bucket (the command is
printed, and shown in docs/demo.md) is searchable at the service's next look at the pointer; the
service itself gains no write route.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from image_search.config import Settings
from image_search.demo.environment import Target
from image_search.ingest.consumer import consume, events_queue, sqs_client
from image_search.model.embedder import Embedder
from image_search.storage import s3

LOG = logging.getLogger(__name__)

QUEUE = "image-search-demo-events"
# Long polls short enough for Ctrl-C to stop the consumer at once.
POLL_SECONDS = 1


@contextmanager
def ingesting(
    target: Target, *, settings: Settings, client: s3.S3Client, embedder: Embedder
) -> Iterator[bool]:
    """Ingest the embedded bucket's changes meanwhile; False (and nothing runs) on any other S3,
    whose events the demo cannot wire."""
    if not target.embedded:
        yield False
        return
    sqs = sqs_client("")
    url = events_queue(sqs, client, bucket=target.bucket, name=QUEUE)
    stop = threading.Event()

    def run() -> None:
        try:
            consume(
                settings,
                queue_url=url,
                client=client,
                sqs=sqs,
                embedder=embedder,
                stop=stop,
                wait=POLL_SECONDS,
            )
        except Exception:  # the demo goes on serving what was published
            LOG.exception("the demo's ingest stopped")

    thread = threading.Thread(target=run, name="ingest", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join(timeout=POLL_SECONDS * 10)


def copy_command(endpoint: str, bucket: str) -> str:
    """A command that copies a photo into the demo's bucket (any credentials: moto takes them)."""
    return (
        "python -c \"import boto3, sys; boto3.client('s3', endpoint_url='"
        + endpoint
        + "', region_name='us-east-1', aws_access_key_id='demo', aws_secret_access_key='demo')"
        f".upload_file(sys.argv[1], '{bucket}', sys.argv[2])\" photo.jpg animals/photo.jpg"
    )
