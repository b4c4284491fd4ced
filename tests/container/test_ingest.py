"""The ingest function as deployed: ``handler.ingest`` in the built image under the Runtime
Interface Emulator, handed a recorded SQS event (S3's notifications as the event source mapping
delivers them) for a bucket the image's own build functions published, on moto's S3 on the
daemon's bridge. The image must hold all ingest needs: the model, its decoders, the handler."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.artefacts.segments import load_segment
from image_search.storage import s3
from tests.container import rie
from tests.container.conftest import (
    IMAGE,
    BuiltImage,
    build_in_containers,
    function_environment,
    new_bucket,
)
from tests.support.factories import png_bytes
from tests.support.paths import load_event

ADDED = "animals/new cat + été.png"  # what the recorded event's ObjectCreated names (URL-encoded)
DELETED = "animals/0.png"  # and its ObjectRemoved
TWIN = "nature/twin.png"  # built from the bytes the upload has: its vector is the reference


def recorded(bucket: str) -> dict[str, Any]:
    event = load_event("sqs-s3-notifications.json")
    loaded: dict[str, Any] = json.loads(json.dumps(event).replace("photos-bucket", bucket))
    return loaded


def test_the_ingest_function_publishes_a_segment_from_a_recorded_sqs_event(
    image: BuiltImage, bridge_s3: str, docker_env: dict[str, str]
) -> None:
    bucket = new_bucket({DELETED: png_bytes(0), "animals/1.png": png_bytes(1), TWIN: png_bytes(50)})
    built = build_in_containers(bucket, endpoint=bridge_s3, docker_env=docker_env)
    assert built.merged["published"] is True, built.merged
    client = s3.make_client()
    client.put_object(Bucket=bucket, Key=ADDED, Body=png_bytes(50))
    client.delete_object(Bucket=bucket, Key=DELETED)

    event = recorded(bucket)
    env = function_environment(bridge_s3, bucket)
    with rie.running(
        IMAGE, rie.command("IngestFunction"), environment=env, docker_env=docker_env
    ) as ingest:
        response = ingest.invoke(event)
        assert response == {"batchItemFailures": []}, ingest.logs()[-4000:]
        # Delivered again (SQS is at least once): its sequencers were applied, nothing changes.
        assert ingest.invoke(event) == {"batchItemFailures": []}

    where = IndexLocation(client, bucket, "index/")
    pointer = read_pointer(where)
    assert pointer is not None and pointer.build_id == built.merged["build_id"]
    (ref,) = pointer.segments or []
    metadata, vectors = load_vectors(where, pointer=pointer)
    segment, added = load_segment(where, ref, model=metadata.model, dim=metadata.dim)
    assert [item.key for item in segment.items] == [ADDED]
    assert segment.deletes == [DELETED]
    assert segment.base_build_id == pointer.build_id
    # Embedded by the image as its build embeds: the same bytes give the build's vector.
    twin = [item.key for item in metadata.items].index(TWIN)
    np.testing.assert_allclose(added[0], vectors[twin], atol=1e-5)
