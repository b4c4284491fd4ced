"""The container tests' parts, each made once per session: the project's Docker daemon, the image
built by `make image` with the tiny model, moto's S3 on the daemon's bridge, and a bucket whose
index the image's own build functions published.

Everything the session starts, it stops: containers as each test ends, the S3 server, and the
daemon if it was not running before. infra/model/ is given back as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from image_search.demo.local_s3 import embedded_s3
from image_search.storage import s3
from tests.container import rie
from tests.support.buckets import put
from tests.support.factories import sample_bucket_layout, save_tiny_clip

IMAGE = "image-search-test:tiny"
API_KEY = "container-test-key"
MODEL_DIR = rie.ROOT / "infra/model"
# Small shards, so the build runs several of them as the Distributed Map would.
SHARD_SIZE = 4


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.container)


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_env() -> Iterator[dict[str, str]]:
    """The project's daemon (mk/dockerd.sh), started here unless it runs; stopped if started."""
    if shutil.which("docker") is None and os.geteuid() != 0:
        _missing("no docker here and no root to install docker.io: see docs/deploy.md")
    env = rie.daemon_env()
    try:
        probe = subprocess.run(
            ["docker", "version"], env={**os.environ, **env}, capture_output=True
        )
        was_running = probe.returncode == 0
    except FileNotFoundError:  # no docker client yet: mk/dockerd.sh installs docker.io
        was_running = False
    started = subprocess.run([rie.DOCKERD, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        _missing(f"the project's Docker daemon did not start: {started.stderr.strip()}")
    yield env
    if not was_running:
        subprocess.run([rie.DOCKERD, "stop"], check=False)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """infra/model/ as the user left it, given back after the session's builds filled it."""
    kept = tmp_path_factory.mktemp("infra-model-kept")
    for path in MODEL_DIR.iterdir():
        if path.name != "README.md":
            shutil.move(path, kept / path.name)
    yield
    for path in MODEL_DIR.iterdir():
        if path.name != "README.md":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in kept.iterdir():
        shutil.move(path, MODEL_DIR / path.name)


@dataclass
class BuiltImage:
    tag: str
    make_output: str
    checkpoint: Path


@pytest.fixture(scope="session")
def image(
    docker_env: dict[str, str], model_folder: None, tmp_path_factory: pytest.TempPathFactory
) -> BuiltImage:
    """`make image MODEL=<tiny checkpoint>`: the Dockerfile's export stage exports it with torch."""
    checkpoint = save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
    done = subprocess.run(
        ["make", "--no-print-directory", "image", f"MODEL={checkpoint}", f"IMAGE={IMAGE}"],
        cwd=rie.ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return BuiltImage(tag=IMAGE, make_output=done.stdout, checkpoint=checkpoint)


@pytest.fixture(scope="session")
def bridge_s3(docker_env: dict[str, str]) -> Iterator[str]:
    """moto's S3 on the daemon's bridge address: the containers reach it, nothing else can."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        with embedded_s3(host=rie.bridge_address()) as endpoint:
            env.setenv("AWS_ENDPOINT_URL_S3", endpoint)
            yield endpoint


def function_environment(endpoint: str, bucket: str, **settings: str) -> dict[str, str]:
    """What the template and `sam local --env-vars` give a function, here against moto."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "IMAGE_SEARCH_BUCKET": bucket,
        "IMAGE_SEARCH_INDEX_PREFIX": "index/",
        **settings,
    }


def new_bucket(layout: dict[str, bytes]) -> str:
    client = s3.make_client()
    name = f"container-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    for key, data in layout.items():
        put(client, name, key, data)
    return name


@dataclass
class ContainerBuild:
    bucket: str
    plan: dict[str, Any]
    shards: list[dict[str, Any]]
    merged: dict[str, Any]


@pytest.fixture(scope="session")
def container_build(
    image: BuiltImage, bridge_s3: str, docker_env: dict[str, str]
) -> ContainerBuild:
    """The sample bucket, built by the image's own build functions."""
    bucket = new_bucket(sample_bucket_layout())
    return build_in_containers(bucket, endpoint=bridge_s3, docker_env=docker_env)


def build_in_containers(
    bucket: str, *, endpoint: str, docker_env: dict[str, str]
) -> ContainerBuild:
    """The state machine's work, state by state: plan, every shard of the plan's item list (the
    Distributed Map's ItemReader), then merge, each function in its own container."""
    env = function_environment(endpoint, bucket, IMAGE_SEARCH_SHARD_SIZE=str(SHARD_SIZE))
    where: dict[str, Any] = {"environment": env, "docker_env": docker_env}
    start = json.loads((rie.ROOT / "tests/events/sfn-execution-input.json").read_text())
    with rie.running(IMAGE, rie.command("BuildPlanFunction"), **where) as plan:
        planned = plan.invoke(start)
    assert planned.get("has_work") is True, planned
    items = json.loads(
        s3.get_bytes(s3.make_client(), bucket=bucket, key=planned["items_key"]).decode()
    )
    with rie.running(IMAGE, rie.command("EmbedShardFunction"), **where) as shard:
        shards = [
            shard.invoke({"plan_id": planned["plan_id"], "shard_id": item["shard_id"]})
            for item in items
        ]
    with rie.running(IMAGE, rie.command("BuildMergeFunction"), **where) as merge:
        merged = merge.invoke({"plan_id": planned["plan_id"]})
    return ContainerBuild(bucket=bucket, plan=planned, shards=shards, merged=merged)
