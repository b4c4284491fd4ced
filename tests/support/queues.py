"""SQS queues on moto's server that a bucket's own notifications go to (moto sends them)."""

from __future__ import annotations

import uuid
from typing import Any

from image_search.ingest import consumer
from image_search.storage import s3


def events_queue(sqs: Any, client: s3.S3Client, bucket: str, *, visibility: int = 30) -> str:
    """A queue receiving the bucket's object-created and object-removed events, empty; its URL."""
    url = consumer.events_queue(
        sqs,
        client,
        bucket=bucket,
        name=f"events-{uuid.uuid4().hex[:10]}",
        attributes={"VisibilityTimeout": str(visibility)},
    )
    drain(sqs, url)  # S3's test message, sent on configuration
    return url


def drain(sqs: Any, url: str) -> int:
    """Delete every message waiting now (moto allows one PurgeQueue a minute, as SQS does)."""
    drained = 0
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return drained
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        drained += len(messages)
