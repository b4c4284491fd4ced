"""``python -m image_search ingest --queue-url URL --once``: the consumer on the command line, with
one summary line, and one ``error:`` line for a queue it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_search.build.pipeline import run_build
from image_search.cli import main
from image_search.config import get_settings
from image_search.ingest.consumer import sqs_client
from image_search.model.factory import embedder_for
from image_search.storage import s3
from tests.support.factories import png_bytes
from tests.support.queues import events_queue


def test_the_command_ingests_until_the_queue_is_empty(
    bucket: str,
    client: s3.S3Client,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", s3_endpoint)
    monkeypatch.setenv("IMAGE_SEARCH_INGEST_WINDOW_SECONDS", "0")
    client.put_object(Bucket=bucket, Key="animals/0.png", Body=png_bytes(0))
    settings = get_settings()
    assert run_build(settings, client=client, embedder=embedder_for(settings)).published
    queue = events_queue(sqs_client(""), client, bucket)
    client.put_object(Bucket=bucket, Key="animals/new.png", Body=png_bytes(1))
    client.delete_object(Bucket=bucket, Key="animals/0.png")

    assert main(["ingest", "--queue-url", queue, "--once"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("ingest: ") and "1 added, 1 deleted" in line
    assert line.endswith("0 failed; 1 segment(s) published")

    missing = queue.rsplit("/", 1)[0] + "/no-such-queue"
    assert main(["ingest", "--queue-url", missing, "--once"]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: SQS queue {missing}: ")
