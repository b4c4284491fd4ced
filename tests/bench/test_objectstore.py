"""The scale benchmark's file-backed S3 (bench/objectstore.py) over real HTTP, driven by boto3."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from bench.s3server import s3_server

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
