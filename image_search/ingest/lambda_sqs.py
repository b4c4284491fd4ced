"""The ingest function on Lambda: an SQS event source mapping hands it a batch of messages, and it
answers which ones failed (``batchItemFailures``, with ``ReportBatchItemFailures`` on the mapping in
template.yaml), so SQS deletes the others and delivers only those again.

The model, the S3 client and the view of the published index live as long as the execution
environment: a warm function reads each build and segment once.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from image_search.artefacts.location import IndexLocation
from image_search.build.options import BuildOptions
from image_search.config import get_settings
from image_search.errors import ConfigError
from image_search.ingest.batch import IngestReport, Message, ingest
from image_search.ingest.view import ViewCache
from image_search.messages import settings_problem
from image_search.model.factory import embedder_for
from image_search.storage import s3

LOG = logging.getLogger(__name__)


def messages_of(event: dict[str, Any]) -> list[Message]:
    """The SQS messages of a Lambda event (records of other sources are not ours to answer)."""
    records = event.get("Records") if isinstance(event, dict) else None
    return [
        Message(message_id=record["messageId"], body=str(record.get("body", "")))
        for record in records or []
        if isinstance(record, dict)
        and record.get("eventSource") == "aws:sqs"
        and isinstance(record.get("messageId"), str)
    ]


def handle(event: dict[str, Any]) -> tuple[IngestReport, dict[str, Any]]:
    """Ingest the event's messages; the report, and the partial batch response for Lambda."""
    messages = messages_of(event)
    try:
        report = run(messages)
    except Exception:
        LOG.exception("ingest of %d message(s) failed; SQS delivers them again", len(messages))
        report = IngestReport(messages=len(messages), failed={m.message_id for m in messages})
    failures = [{"itemIdentifier": m.message_id} for m in messages if m.message_id in report.failed]
    return report, {"batchItemFailures": failures}


def run(messages: list[Message]) -> IngestReport:
    where, options, views = _context()
    return ingest(where, options, messages, embedder=embedder_for(get_settings()), views=views)


def warm() -> None:
    """Load the model during the function's init phase, so the first batch does not pay for it.
    A failure is logged and left to the first batch, which reports it on its messages."""
    try:
        embedder_for(get_settings()).load()
    except Exception as exc:
        LOG.warning("ingest warm-up incomplete (%s: %s)", type(exc).__name__, exc)


@lru_cache(maxsize=1)
def _context() -> tuple[IndexLocation, BuildOptions, ViewCache]:
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise ConfigError(settings_problem(exc, flags=False)) from None
    client = s3.make_client(max_connections=settings.download_workers + 2)
    where = IndexLocation(client, settings.bucket, settings.index_prefix)
    return where, BuildOptions.of(settings), ViewCache()
