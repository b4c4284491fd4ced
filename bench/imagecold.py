"""The Lambda image's cold start beside the process's, on one published index (docs/deploy.md).

    python -m bench.imagecold --image image-search:vitb32 [--count 100000] [--rounds 3]

The image is one `make image` built; the index is a synthetic build of ``--count`` images
published under the image's model identity on moto's S3, which listens on the project's Docker
bridge (mk/dockerd.sh) so the containers reach it. Each round times, from one clock:

- container: ``docker run`` of the search function (the emulator starts, as on Lambda's
  init) → the first 200 of the README's text search through the Runtime Interface Emulator,
  split into the container up to the emulator listening and the first invoke (init + query);
- process: ``uvicorn handler:app`` spawned on this machine with the same export (copied out of
  the image), the same index and S3 → its first 200 (bench.fixtures.server.first_answer, the
  bench's own cold start).

One JSON line per round on stdout, then the medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.fixtures.publish import publish_synthetic
from bench.fixtures.server import QUERY, first_answer, service_env
from image_search.demo.local_s3 import embedded_s3
from image_search.storage import s3
from tests.container import rie

MODEL_IN_IMAGE = "/opt/models/openai/clip-vit-base-patch32"


def search_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((rie.ROOT / "infra/events/search.json").read_text())
    event["body"] = json.dumps({"query": QUERY, "k": 10, "folder": ""})
    event["headers"].pop("x-api-key", None)
    return event


def container_round(
    image: str, *, env: dict[str, str], docker_env: dict[str, str]
) -> dict[str, float]:
    started = time.perf_counter()
    with rie.running(
        image, rie.command("SearchFunction"), environment=env, docker_env=docker_env
    ) as search:
        listening = time.perf_counter()
        answer = httpx.post(search.url, content=json.dumps(search_event()), timeout=300).json()
        answered = time.perf_counter()
        if answer.get("statusCode") != 200:
            raise RuntimeError(f"the search answered {answer}:\n{search.logs()[-3000:]}")
    return {
        "container_s": answered - started,
        "emulator_up_s": listening - started,
        "first_invoke_s": answered - listening,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imagecold", description=__doc__)
    parser.add_argument("--image", required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    docker_env = rie.daemon_env()
    with tempfile.TemporaryDirectory() as work, embedded_s3(host=rie.bridge_address()) as endpoint:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
        published = publish_synthetic(s3.make_client(), count=args.count, model=MODEL_IN_IMAGE)
        export = Path(work) / "model"
        created = rie.docker("create", args.image, env=docker_env)
        try:
            rie.docker("cp", f"{created}:{MODEL_IN_IMAGE}", str(export), env=docker_env)
        finally:
            rie.docker("rm", created, env=docker_env, check=False)
        env = {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "IMAGE_SEARCH_BUCKET": published.bucket,
            "IMAGE_SEARCH_REFRESH_SECONDS": "0",
        }
        rounds = []
        for number in range(args.rounds):
            measured = container_round(args.image, env=env, docker_env=docker_env)
            with tempfile.TemporaryDirectory() as cache:
                process_env = service_env(
                    bucket=published.bucket, model=str(export), cache=Path(cache)
                )
                measured["process_s"] = first_answer(process_env)
            measured["round"] = number + 1
            print(json.dumps({k: round(v, 3) for k, v in measured.items()}), flush=True)
            rounds.append(measured)
    medians = {
        name: round(statistics.median(r[name] for r in rounds), 3)
        for name in ("container_s", "emulator_up_s", "first_invoke_s", "process_s")
    }
    print(json.dumps({"count": args.count, "index_type": published.index_type, "median": medians}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
