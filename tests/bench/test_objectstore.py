"""The scale benchmark's file-backed S3 (bench/fixtures/objectstore.py) over real HTTP, driven
by boto3."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from bench.fixtures import objectstore
from bench.fixtures.s3server import s3_server

MB = 2**20
PART = 5 * MB  # S3's smallest part


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    files = tmp_path / "objects"
    with s3_server(files=str(files)):
        client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
        client.create_bucket(Bucket="b")
        yield client, files


def test_a_multipart_object_reads_back_whole_and_across_part_boundaries(
    store: tuple[Any, Path], tmp_path: Path
) -> None:
    client, _ = store
    body = os.urandom(2 * PART + 12345)
    source = tmp_path / "source.bin"
    source.write_bytes(body)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART)
    client.upload_file(str(source), "b", "big.bin", Config=config)

    assert client.get_object(Bucket="b", Key="big.bin")["Body"].read() == body
    for start, end in [(PART - 10, PART + 10), (0, 2 * PART + 100), (2 * PART, len(body) - 1)]:
        got = client.get_object(Bucket="b", Key="big.bin", Range=f"bytes={start}-{end}")
        assert got["Body"].read() == body[start : end + 1]
    target = tmp_path / "back.bin"
    client.download_file("b", "big.bin", str(target), Config=config)
    assert target.read_bytes() == body


def test_a_retried_complete_gets_the_same_answer(store: tuple[Any, Path]) -> None:
    """A client whose complete timed out retries it; S3 answers it again instead of NoSuchUpload."""
    client, _ = store
    upload = client.create_multipart_upload(Bucket="b", Key="k")["UploadId"]
    etags = [
        client.upload_part(
            Bucket="b", Key="k", UploadId=upload, PartNumber=n, Body=bytes([n]) * PART
        )["ETag"]
        for n in (1, 2)
    ]
    parts = {"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]}
    first = client.complete_multipart_upload(
        Bucket="b", Key="k", UploadId=upload, MultipartUpload=parts
    )
    again = client.complete_multipart_upload(
        Bucket="b", Key="k", UploadId=upload, MultipartUpload=parts
    )
    assert again["ETag"] == first["ETag"]
    assert client.get_object(Bucket="b", Key="k")["Body"].read() == b"\1" * PART + b"\2" * PART

    with pytest.raises(ClientError) as unknown:
        client.complete_multipart_upload(
            Bucket="b", Key="k", UploadId="no-such-upload", MultipartUpload=parts
        )
    assert unknown.value.response["Error"]["Code"] == "NoSuchUpload"


def test_overwrites_and_deletes_leave_no_files_and_conditions_hold(
    store: tuple[Any, Path],
) -> None:
    client, files = store
    client.put_object(Bucket="b", Key="k", Body=b"one")
    with pytest.raises(ClientError) as exists:
        client.put_object(Bucket="b", Key="k", Body=b"two", IfNoneMatch="*")
    assert exists.value.response["Error"]["Code"] == "PreconditionFailed"
    etag = client.head_object(Bucket="b", Key="k")["ETag"]
    client.put_object(Bucket="b", Key="k", Body=b"three", IfMatch=etag)
    assert client.get_object(Bucket="b", Key="k")["Body"].read() == b"three"
    assert len(list(files.iterdir())) == 1  # the overwritten and refused bodies are gone

    client.delete_object(Bucket="b", Key="k")
    assert list(files.iterdir()) == []


def test_every_accepted_connection_sends_without_waiting_for_delayed_acks(tmp_path: Path) -> None:
    """TCP_NODELAY on the server's side: without it each reply's body waited ~40 ms for the
    client's delayed ACK of the headers, a cost real S3 does not have."""
    options: list[int] = []

    class Recording(objectstore.Handler):
        def setup(self) -> None:
            super().setup()
            options.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = objectstore.Server(("127.0.0.1", 0), Recording)
    server.store = objectstore.Store(tmp_path)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for _ in range(2):  # a connection each
            connection = HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
            connection.request("PUT", "/b/k", body=b"small")
            assert connection.getresponse().status == 200
            connection.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(options) == 2 and all(options), options
