"""``python -m image_search ingest --queue-url URL``: the ingest Lambda's code as a long-running
SQS consumer, for servers outside AWS's event source mappings.

Messages are gathered for up to ``IMAGE_SEARCH_INGEST_WINDOW_SECONDS`` or
``IMAGE_SEARCH_INGEST_BATCH_SIZE`` messages, applied as one segment (ingest/batch.py), and the
ones that succeeded deleted. Failed ones are left alone: SQS delivers them again once their
visibility timeout passes, and after the queue's maxReceiveCount moves them to its dead-letter
queue. A consumer killed mid-batch deletes nothing, so the batch is delivered again and, since
ingest compares S3 with the published view, gives the same index.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from image_search.artefacts.location import IndexLocation
from image_search.build.options import BuildOptions
from image_search.config import Settings
from image_search.ingest.batch import IngestReport, Message, ingest
from image_search.ingest.view import ViewCache
from image_search.model.embedder import Embedder
from image_search.storage import s3

LOG = logging.getLogger(__name__)

SqsClient = Any  # boto3 clients are generated at run time
# SQS's limits: 10 messages per receive or delete call, 20 s the longest poll.
RECEIVE_MAX, LONG_POLL_SECONDS = 10, 20
QUEUE_REGION = re.compile(r"https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com")


@dataclass(frozen=True, slots=True)
class Received:
    message: Message
    receipt: str


def sqs_client(queue_url: str) -> SqsClient:
    """An SQS client in the queue's region (from its URL when it is AWS's); the endpoint comes
    from boto3's own ``AWS_ENDPOINT_URL_SQS`` like S3's."""
    import boto3

    found = QUEUE_REGION.match(queue_url)
    return boto3.session.Session().client("sqs", region_name=found.group(1) if found else None)


def events_queue(
    sqs: SqsClient,
    client: s3.S3Client,
    *,
    bucket: str,
    name: str,
    attributes: dict[str, str] | None = None,
) -> str:
    """Create queue ``name`` and send it ``bucket``'s object-created and -removed events (the
    bucket's own notifications); its URL. For an S3-compatible server the stack does not wire
    (the demo's embedded S3); on AWS, template.yaml does this."""
    url: str = sqs.create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    return url


def consume(
    settings: Settings,
    *,
    queue_url: str,
    client: s3.S3Client,
    sqs: SqsClient,
    embedder: Embedder,
    once: bool = False,
    stop: threading.Event | None = None,
    wait: int = LONG_POLL_SECONDS,
) -> list[IngestReport]:
    """Ingest what the queue delivers until ``stop`` is set, or, with ``once``, until the queue
    has nothing left to deliver; the batches' reports. ``wait``: the longest a receive waits
    for a first message (how late ``stop`` may be noticed)."""
    where = IndexLocation(client, settings.bucket, settings.index_prefix)
    options = BuildOptions.of(settings)
    views = ViewCache()
    stop = stop or threading.Event()
    reports = []
    while not stop.is_set():
        received = gather(
            sqs,
            queue_url=queue_url,
            size=settings.ingest_batch_size,
            window=settings.ingest_window_seconds,
            wait=1 if once else min(wait, LONG_POLL_SECONDS),
        )
        if not received:
            if once:
                break
            continue
        messages = [one.message for one in received]
        try:
            report = ingest(where, options, messages, embedder=embedder, views=views)
        except Exception:
            # Nothing is deleted: the whole batch comes back after its visibility timeout.
            LOG.exception("ingest of %d message(s) failed; SQS delivers them again", len(received))
            report = IngestReport(messages=len(messages), failed={m.message_id for m in messages})
        delete(
            sqs,
            queue_url=queue_url,
            done=[r for r in received if r.message.message_id not in report.failed],
        )
        reports.append(report)
    return reports


def gather(
    sqs: SqsClient, *, queue_url: str, size: int, window: float, wait: int
) -> list[Received]:
    """Up to ``size`` messages: the first long poll waits up to ``wait`` seconds, the rest of the
    batch up to ``window`` seconds after the first message arrived."""
    received: dict[str, Received] = {}
    deadline: float | None = None
    while len(received) < size:
        seconds = wait if deadline is None else max(0, int(deadline - time.monotonic()))
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(RECEIVE_MAX, size - len(received)),
            WaitTimeSeconds=min(seconds, LONG_POLL_SECONDS),
        )
        for raw in answer.get("Messages", []):
            message = Message(message_id=raw["MessageId"], body=raw.get("Body", ""))
            received[message.message_id] = Received(message, raw["ReceiptHandle"])
        if not received or (deadline is not None and time.monotonic() >= deadline):
            break
        if deadline is None:
            deadline = time.monotonic() + window
        if not answer.get("Messages") and seconds == 0:
            break
    return list(received.values())


def delete(sqs: SqsClient, *, queue_url: str, done: list[Received]) -> None:
    for start in range(0, len(done), RECEIVE_MAX):
        entries = [
            {"Id": str(n), "ReceiptHandle": one.receipt}
            for n, one in enumerate(done[start : start + RECEIVE_MAX])
        ]
        answer = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        for failure in answer.get("Failed", []):
            # Its receipt expired (the batch outlived the visibility timeout): it comes back
            # and is found unchanged.
            LOG.warning("could not delete a message: %s", failure.get("Message", failure))


def total(reports: list[IngestReport]) -> IngestReport:
    """The batches' reports added up (``segment_id``: the last one published)."""
    sum_ = IngestReport()
    for report in reports:
        sum_.messages += report.messages
        sum_.failed |= report.failed
        sum_.added += report.added
        sum_.deleted += report.deleted
        sum_.unchanged += report.unchanged
        sum_.stale += report.stale
        sum_.ignored += report.ignored
        sum_.skipped += report.skipped
        sum_.segment_id = report.segment_id or sum_.segment_id
    return sum_


def summary(reports: list[IngestReport]) -> str:
    """One line for a run of the consumer."""
    segments = sum(1 for report in reports if report.segment_id)
    return total(reports).line(f"{segments} segment(s) published")
