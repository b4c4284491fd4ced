"""``python -m image_search demo``: the whole product on one machine, on sample photos.

With no ``IMAGE_SEARCH_BUCKET`` and no ``AWS_ENDPOINT_URL_S3``, an embedded S3 (moto, in memory)
gets a bucket of the bundled photos in ``sample_photos/``; the real build indexes them and uvicorn
serves the API and the search page. The embedded S3 forgets everything when it stops, so the
published index is copied to ``.demo/`` after each build and put back at the next start: the
incremental build then finds every photo unchanged and embeds nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import ValidationError

from image_search.build.report import BuildReport
from image_search.demo.environment import (
    PHOTOS,
    DemoOptions,
    Target,
    demo_environment,
    prepare,
)
from image_search.demo.fresh import copy_command, ingesting
from image_search.errors import ImageSearchError, ModelLoadError
from image_search.messages import fail, settings_problem

if TYPE_CHECKING:
    from image_search.model.embedder import Embedder

LOG = logging.getLogger(__name__)

HOW_TO_PASS_A_MODEL = (
    'run the demo with a local CLIP model: make demo ARGS="--model /path/to/model" '
    "(or python -m image_search demo --model /path/to/model, or IMAGE_SEARCH_MODEL=/path/to/model)"
)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="CLIP model id or local directory (IMAGE_SEARCH_MODEL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, default=Path(".demo"), help="saved index")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folders of photos to upload")


def run_demo(options: DemoOptions) -> int:
    """Storage, photos, build, serve until Ctrl-C; one line and a non-zero exit on failure."""
    # moto logs every request, faiss which CPU build it picked: noise next to the demo's lines.
    for noisy in ("werkzeug", "faiss.loader", "huggingface_hub", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        listener = _listen(options.host, options.port)
    except OSError as exc:
        return fail(f"cannot listen on {options.host}:{options.port} ({exc.strerror}); try --port")
    try:
        with listener, demo_environment(options) as target:
            return _build_and_serve(options, target, listener)
    except KeyboardInterrupt:  # before serving: while loading the model or building
        print("\ninterrupted", flush=True)
        return 130


def _build_and_serve(options: DemoOptions, target: Target, listener: socket.socket) -> int:
    import uvicorn

    from image_search.config import get_settings
    from image_search.serve.api import create_app
    from image_search.serve.service import get_service

    get_settings.cache_clear()
    get_service.cache_clear()
    try:
        settings = get_settings()
    except ValidationError as exc:
        return fail(settings_problem(exc, flags=False))
    # Before anything imports huggingface_hub (creating the service may): it reads
    # HF_HUB_OFFLINE once, at import.
    hub_unreachable = _offline_unless_hub_reachable(settings.model)
    service = get_service()
    if problem := _load_model(service.embedder, settings.model, hub_unreachable=hub_unreachable):
        return fail(problem)
    try:
        report = prepare(target, options=options, client=service.client, embedder=service.embedder)
        service.current()  # load the index now: the page's first requests should not wait for it
    except ImageSearchError as exc:
        return fail(str(exc))
    print(_describe(report), flush=True)
    host, port = listener.getsockname()[:2]
    print(f"search page and API: http://{host}:{port}{service.settings.api_prefix}/", flush=True)
    with ingesting(
        target, settings=settings, client=service.client, embedder=service.embedder
    ) as on:
        if on:
            endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
            print(
                f"photos copied into s3://{target.bucket}/ are searchable within about "
                f"{settings.poll_seconds + 5:.0f} s; to copy one: "
                + copy_command(endpoint, target.bucket),
                flush=True,
            )
        print("press Ctrl-C to stop", flush=True)
        # The lifespan starts the timer that picks up builds published while the demo runs.
        config = uvicorn.Config(create_app(), log_level="warning", lifespan="on")
        try:
            uvicorn.Server(config).run(sockets=[listener])
        except KeyboardInterrupt:
            pass  # uvicorn stops gracefully on Ctrl-C, then raises it again
    print("stopped", flush=True)
    return 0


def _load_model(embedder: Embedder, model: str, *, hub_unreachable: bool) -> str | None:
    """Load the model now, before any S3 work; what went wrong, in one line, if it fails."""
    print(f"loading model {model} …", flush=True)
    looks_like_a_path = model.startswith((".", "~")) or Path(model).is_absolute()
    if looks_like_a_path and not Path(model).expanduser().is_dir():
        return f"cannot load model {model!r}: {_reason('no such directory')}"
    try:
        embedder.load()
    except ModelLoadError as exc:
        unreachable = "the model hub is unreachable and the model is not cached"
        return f"cannot load model {model!r}: {_reason(unreachable if hub_unreachable else exc)}"
    return None


def _describe(report: BuildReport) -> str:
    if report.published:
        return (
            f"index: published build {report.build_id} with {report.count} images "
            f"({report.embedded} embedded, {report.reused} reused, {len(report.skipped)} skipped)"
        )
    return f"index: reused build {report.build_id} with {report.count} images, nothing to embed"


def _listen(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        # Listening now queues the first connections until uvicorn takes the socket over, so the
        # URL printed before that already works.
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


def _offline_unless_hub_reachable(model: str) -> bool:
    """For a hub id, look for the hub first (3 s at most): unreachable, loading goes offline and
    fails at once instead of retrying for half a minute. True when it went offline."""
    if Path(model).exists() or model.startswith("s3://") or "HF_HUB_OFFLINE" in os.environ:
        return False
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=3).close()
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = "1"
        # huggingface_hub reads the variable once, at import; if something imported it already,
        # its constant is what transformers asks (through is_offline_mode()).
        if hub := sys.modules.get("huggingface_hub.constants"):
            setattr(hub, "HF_HUB_OFFLINE", True)  # noqa: B010 - the module declares no such name
        return True
    return False


def _reason(problem: ModelLoadError | str) -> str:
    cause = problem.__cause__ if isinstance(problem, ModelLoadError) else None
    text = str(cause or problem).strip().splitlines()[0]
    return f"{text.rstrip('.')[:200]}. To fix it, {HOW_TO_PASS_A_MODEL}"
