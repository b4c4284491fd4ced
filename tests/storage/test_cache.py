"""The local cache downloads in parallel ranged parts and hashes each part as it arrives: the
checksum it reports is the one the publisher computed from the whole bytes."""

from __future__ import annotations

import os
from pathlib import Path

from image_search.storage import cache, checksum, s3


def test_checksums_of_downloaded_and_already_present_files_match_the_bytes(
    client: s3.S3Client, bucket: str, tmp_path: Path
) -> None:
    files = {
        "big": os.urandom(2 * cache.PART_BYTES + 3),  # three parts, the last one short
        "exact": os.urandom(cache.PART_BYTES),
        "small": b"abc",
        "empty": b"",
    }
    for key, data in files.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    paths = {key: tmp_path / key for key in files}
    fetched = cache.fetch(client, bucket=bucket, files=paths, checksums=["big", "exact", "empty"])
    expected = {key: checksum.of_bytes(data) for key, data in files.items()}
    assert fetched.checksums == {key: expected[key] for key in ("big", "exact", "empty")}
    assert fetched.bytes == sum(len(data) for data in files.values())
    assert all(paths[key].read_bytes() == data for key, data in files.items())
    assert len(set(expected.values())) == len(files)

    again = cache.fetch(client, bucket=bucket, files=paths, checksums=list(files))
    assert again.bytes == 0 and again.checksums == expected  # hashed from the local copies
    assert checksum.of_file(paths["big"]) == expected["big"]
