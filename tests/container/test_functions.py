"""Each function of template.yaml in the built image, under the Lambda Runtime Interface Emulator,
answering its own event: the search API's routes as API Gateway sends them, and the index
build's three stages, whose published index must equal the local engine's."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.build.pipeline import run_build
from image_search.config import Settings
from image_search.model.onnx_clip import OnnxEmbedder
from image_search.storage import s3
from tests.container import rie
from tests.container.conftest import (
    IMAGE,
    SHARD_SIZE,
    ContainerBuild,
    function_environment,
    new_bucket,
)
from tests.support.factories import BROKEN_KEYS, sample_bucket_layout

EVENTS = rie.ROOT / "infra/events"
# infra/events/*.json carry this key, as `sam local` users send it (infra/env.json).
EVENT_API_KEY = "local-dev-key"
RESULT_FIELDS = {"rank", "score", "distance", "folder", "key", "s3_path", "image_url"}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def with_json_body(base: dict[str, Any], *, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """``base`` (an HTTP API v2 event) sent to another POST route with another JSON body."""
    changed = copy.deepcopy(base)
    changed["rawPath"] = changed["requestContext"]["http"]["path"] = path
    changed["routeKey"] = changed["requestContext"]["routeKey"] = f"POST {path}"
    changed["body"] = json.dumps(body)
    changed["headers"]["content-length"] = str(len(changed["body"]))
    return changed


def upload_event(image: bytes, *, filename: str, k: int) -> dict[str, Any]:
    """A multipart upload as the HTTP API hands it to Lambda: the body base64-encoded."""
    boundary = "----container-test-boundary"
    disposition = "Content-Disposition: form-data; name="
    parts = (
        (
            f'--{boundary}\r\n{disposition}"k"\r\n\r\n{k}\r\n'
            f'--{boundary}\r\n{disposition}"file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    upload = copy.deepcopy(event("search_by_image.json"))
    upload["headers"]["content-type"] = f"multipart/form-data; boundary={boundary}"
    upload["headers"]["content-length"] = str(len(parts))
    upload["body"] = base64.b64encode(parts).decode()
    assert upload["isBase64Encoded"] is True
    return upload


def answer(response: dict[str, Any]) -> tuple[int, Any]:
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return response["statusCode"], json.loads(body)


@pytest.fixture(scope="module")
def search(
    container_build: ContainerBuild, bridge_s3: str, docker_env: dict[str, str]
) -> Iterator[rie.Function]:
    env = function_environment(
        bridge_s3, container_build.bucket, IMAGE_SEARCH_API_KEYS=EVENT_API_KEY
    )
    with rie.running(
        IMAGE, rie.command("SearchFunction"), environment=env, docker_env=docker_env
    ) as function:
        yield function


def test_the_build_functions_publish_the_index_the_local_engine_publishes(
    container_build: ContainerBuild, docker_env: dict[str, str], tmp_path: Path
) -> None:
    assert container_build.plan["shards"] == len(container_build.shards) > 1
    assert container_build.merged["published"] is True, container_build.merged
    assert container_build.merged["skipped"] == len(BROKEN_KEYS)

    # The same images, built in this process by the local engine with the export the image
    # serves (copied out of it), in shards of the same size.
    created = rie.docker("create", IMAGE, env=docker_env)
    try:
        rie.docker("cp", f"{created}:/opt/models/openai/clip-vit-base-patch32",
                   str(tmp_path / "model"), env=docker_env)  # fmt: skip
    finally:
        rie.docker("rm", created, env=docker_env, check=False)
    local_bucket = new_bucket(sample_bucket_layout())
    settings = Settings(
        bucket=local_bucket,
        model=str(tmp_path / "model"),
        runtime="onnx",
        shard_size=SHARD_SIZE,
        model_cache_dir=tmp_path / "cache",
    )
    embedder = OnnxEmbedder(source=settings.model, cache_dir=settings.model_cache_dir)
    client = s3.make_client()
    assert run_build(settings, client=client, embedder=embedder).published

    built = {}
    for bucket in (container_build.bucket, local_bucket):
        where = IndexLocation(client, bucket, "index/")
        pointer = read_pointer(where)
        assert pointer is not None
        built[bucket] = load_vectors(where, pointer=pointer)
    (remote_meta, remote), (local_meta, local) = built.values()
    assert [i.key for i in remote_meta.items] == [i.key for i in local_meta.items]
    assert remote_meta.model == local_meta.model == "/opt/models/openai/clip-vit-base-patch32"
    assert remote.shape == local.shape and remote.shape[0] == len(remote_meta.items)
    np.testing.assert_allclose(remote, local, atol=1e-5)


def test_search_answers_the_text_search(search: rie.Function) -> None:
    status, results = answer(search.invoke(event("search.json")))
    assert status == 200, results
    assert len(results) == 3
    assert all(set(result) >= RESULT_FIELDS for result in results)
    assert [r["rank"] for r in results] == [1, 2, 3]


def test_search_answers_an_upload_sent_base64_as_api_gateway_sends_it(
    search: rie.Function,
) -> None:
    status, results = answer(search.invoke(event("search_by_image.json")))
    assert status == 200, results
    # An indexed image, uploaded, finds itself first: the bytes arrived intact.
    cat = sample_bucket_layout()["animals/cat.png"]
    status, results = answer(search.invoke(upload_event(cat, filename="cat.png", k=3)))
    assert status == 200, results
    assert results[0]["key"] == "animals/cat.png" and results[0]["score"] > 0.99


def test_search_answers_similar_from_the_stored_vector(search: rie.Function) -> None:
    similar = with_json_body(
        event("search.json"), path="/image_search/similar", body={"key": "animals/cat.png", "k": 3}
    )
    status, results = answer(search.invoke(similar))
    assert status == 200, results
    assert len(results) == 3 and "animals/cat.png" not in {r["key"] for r in results}


def test_search_answers_health_with_the_index_loaded(search: rie.Function) -> None:
    status, health = answer(search.invoke(event("health.json")))
    assert status == 200, health


def test_the_image_holds_no_torch_and_runs_the_stand_in_python(
    image: Any, docker_env: dict[str, str]
) -> None:
    probe = (
        "import importlib.util, sys; print(sys.version_info[:2], importlib.util.find_spec('torch'))"
    )
    printed = rie.docker(
        "run", "--rm", "--entrypoint", "python", IMAGE, "-c", probe, env=docker_env
    )
    assert printed.endswith("None"), printed
    assert "MB uncompressed" in image.make_output
