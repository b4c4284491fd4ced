"""Command line: ``python -m image_search build|serve|demo|export|ingest|rollback``,
``scripts/build_index.py``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from image_search.config import DEFAULT_MODEL, ENGINES, INDEX_TYPES, LogSettings
from image_search.demo.run import DemoOptions, add_demo_arguments, run_demo
from image_search.errors import ImageSearchError
from image_search.messages import fail, settings_problem
from image_search.observe import logs

if TYPE_CHECKING:
    from image_search.build.report import BuildReport
    from image_search.config import Settings
    from image_search.storage.s3 import S3Client

LOG = logging.getLogger("image_search")
# How long ``serve`` keeps an idle connection open. It must outlast the idle timeout of whatever
# holds connections to it (an ALB's is 60 s; httpx's pool keeps one 5 s, uvicorn's default): when
# both are equal, a client can send a request on a connection the server is closing that very
# instant, and the request fails with a reset instead of an answer.
KEEP_ALIVE_SECONDS = 75


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket", help="bucket holding the images (IMAGE_SEARCH_BUCKET)")
    parser.add_argument("--folders", help="comma list of folders to index (default: all)")
    parser.add_argument("--model", help="model id, local directory or s3:// directory")
    parser.add_argument(
        "--runtime", choices=["auto", "onnx", "torch"], help="IMAGE_SEARCH_RUNTIME (default auto)"
    )
    parser.add_argument("--index-type", choices=INDEX_TYPES, help="ivfpq: alias of ivf-sq8")
    parser.add_argument("--full", action="store_true", help="re-embed every image")
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would change, publish nothing"
    )
    parser.add_argument("--batch-size", type=int, help="images per model call")
    parser.add_argument("--workers", type=int, help="concurrent downloads")
    parser.add_argument("--shard-size", type=int, help="images per shard (default 1000)")
    parser.add_argument(
        "--engine", choices=ENGINES, help="where the shards run: this process (default) or Ray"
    )
    parser.add_argument("--ray-address", help="a Ray cluster to join (default: start a local Ray)")
    parser.add_argument("--ray-workers", type=int, help="Ray actors (default: one per GPU or CPU)")
    parser.add_argument(
        "--ray-gpus-per-worker",
        type=float,
        help="GPUs per actor (default: 1 if the cluster has any)",
    )


def run_build_command(args: argparse.Namespace) -> int:
    """Run one build from parsed arguments; one summary line, non-zero exit with one-line reason."""
    from image_search.config import Settings
    from image_search.storage import s3

    overrides = {
        "bucket": args.bucket,
        "folders": args.folders,
        "model": args.model,
        "runtime": args.runtime,
        "index_type": args.index_type,
        "batch_size": args.batch_size,
        "download_workers": args.workers,
        "shard_size": args.shard_size,
        "engine": args.engine,
        "ray_address": args.ray_address,
        "ray_workers": args.ray_workers,
        "ray_gpus_per_worker": args.ray_gpus_per_worker,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        return fail(settings_problem(exc))
    try:
        client = s3.make_client(max_connections=settings.download_workers + 2)
        report = _run_engine(settings, client=client, full=args.full, dry_run=args.dry_run)
    except ImageSearchError as exc:
        return fail(str(exc))
    print(report.line())
    for skipped in report.skipped:
        print(f"skipped {skipped.key}: {skipped.reason}", file=sys.stderr)
    return 0


def _run_engine(settings: Settings, *, client: S3Client, full: bool, dry_run: bool) -> BuildReport:
    if settings.engine == "ray":
        from image_search.build.ray_engine import run_on_ray

        return run_on_ray(settings, client=client, full=full, dry_run=dry_run)
    from image_search.build.pipeline import run_build
    from image_search.model.factory import embedder_for

    embedder = embedder_for(settings)
    return run_build(settings, client=client, embedder=embedder, full=full, dry_run=dry_run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_search")
    commands = parser.add_subparsers(dest="command", required=True)
    add_build_arguments(commands.add_parser("build", help="build and publish the index"))
    serve = commands.add_parser("serve", help="serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    demo = commands.add_parser("demo", help="sample photos on an embedded S3, served with the page")
    add_demo_arguments(demo)
    export = commands.add_parser("export", help="export a CLIP model to ONNX for the ONNX runtime")
    export.add_argument(
        "--model",
        default=os.environ.get("IMAGE_SEARCH_MODEL", DEFAULT_MODEL),
        help="model id, local or s3:// directory, or open_clip:ARCH (default: IMAGE_SEARCH_MODEL)",
    )
    export.add_argument(
        "--weights",
        help="for --model open_clip:ARCH: a pretrained tag or a local checkpoint file",
    )
    export.add_argument("--output", required=True, help="local or s3:// directory to write")
    add_quantise_arguments(export)
    ingest = commands.add_parser(
        "ingest", help="index S3's change events from an SQS queue as segments, in seconds"
    )
    ingest.add_argument("--queue-url", required=True, help="the SQS queue S3's events go to")
    ingest.add_argument(
        "--once", action="store_true", help="stop when the queue has nothing left to deliver"
    )
    ingest.add_argument("--bucket", help="bucket holding the images (IMAGE_SEARCH_BUCKET)")
    rollback = commands.add_parser(
        "rollback", help="point current.json back at a kept build (default: the previous one)"
    )
    rollback.add_argument("build_id", nargs="?", help="the build to serve (default: previous)")
    rollback.add_argument("--bucket", help="bucket holding the index (IMAGE_SEARCH_BUCKET)")
    args = parser.parse_args(argv)
    service = {"build": logs.BUILD, "ingest": logs.INGEST}.get(args.command, logs.API)
    logs.configure(service, log_format=LogSettings().log_format)
    if args.command == "build":
        return run_build_command(args)
    if args.command == "ingest":
        return run_ingest_command(queue_url=args.queue_url, once=args.once, bucket=args.bucket)
    if args.command == "demo":
        return run_demo(
            DemoOptions(
                model=args.model,
                host=args.host,
                port=args.port,
                state_dir=args.state_dir,
                photos=args.photos,
            )
        )
    if args.command == "serve":
        return run_serve(host=args.host, port=args.port)
    if args.command == "export":
        return run_export(args)
    if args.command == "rollback":
        return run_rollback(build_id=args.build_id, bucket=args.bucket)
    return 0


def run_ingest_command(*, queue_url: str, once: bool, bucket: str | None) -> int:
    """Consume ``queue_url`` (until it is empty, with ``once``); one summary line at the end."""
    from botocore.exceptions import BotoCoreError, ClientError

    from image_search.config import Settings
    from image_search.ingest.consumer import consume, sqs_client, summary
    from image_search.model.factory import embedder_for
    from image_search.storage import s3

    try:
        settings = Settings(**({"bucket": bucket} if bucket else {}))  # type: ignore[arg-type]
    except ValidationError as exc:
        return fail(settings_problem(exc))
    try:
        client = s3.make_client(max_connections=settings.download_workers + 2)
        reports = consume(
            settings,
            queue_url=queue_url,
            client=client,
            sqs=sqs_client(queue_url),
            embedder=embedder_for(settings),
            once=once,
        )
    except ImageSearchError as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:  # the queue: missing, unreachable, refused
        return fail(f"SQS queue {queue_url}: {exc}")
    except KeyboardInterrupt:
        return 130  # messages not yet deleted are delivered again
    print(summary(reports))
    return 0


def run_rollback(*, build_id: str | None, bucket: str | None) -> int:
    """Point current.json at ``build_id`` (or the previous build); one line either way."""
    from image_search.artefacts.location import IndexLocation
    from image_search.artefacts.rollback import rollback
    from image_search.config import Settings
    from image_search.storage import s3

    try:
        settings = Settings(**({"bucket": bucket} if bucket else {}))  # type: ignore[arg-type]
    except ValidationError as exc:
        return fail(settings_problem(exc))
    where = IndexLocation(s3.make_client(), settings.bucket, settings.index_prefix)
    try:
        done = rollback(where, build_id=build_id, prune_grace_seconds=settings.prune_grace_seconds)
    except ImageSearchError as exc:
        return fail(str(exc))
    print(done.line())
    return 0


def add_quantise_arguments(parser: argparse.ArgumentParser) -> None:
    from image_search.model.quality import DEFAULT_MIN_OVERLAP, DEFAULT_SAMPLE

    parser.add_argument(
        "--quantize", choices=["int8"], help="write an int8 export (dynamic quantisation)"
    )
    parser.add_argument(
        "--check", metavar="S3_URL", help="s3://bucket/prefix/ whose images int8 is checked on"
    )
    parser.add_argument(
        "--sample", type=int, default=DEFAULT_SAMPLE, help="images the check embeds"
    )
    parser.add_argument(
        "--min-overlap",
        type=float,
        default=DEFAULT_MIN_OVERLAP,
        help=f"fail below this top-10 overlap with fp32 (default {DEFAULT_MIN_OVERLAP})",
    )
    parser.add_argument("--force", action="store_true", help="write it even if the check fails")


def run_export(args: argparse.Namespace) -> int:
    """Write the ONNX export of ``--model`` to ``--output``; one line on success or failure."""
    from image_search.config import Settings
    from image_search.model.export import export
    from image_search.model.quantize import Gate

    if not 0 <= args.min_overlap <= 1:
        return fail("--min-overlap is a share of the top 10, between 0 and 1")
    default_cache = Settings.model_fields["model_cache_dir"].default
    cache_dir = Path(os.environ.get("IMAGE_SEARCH_MODEL_CACHE_DIR") or default_cache)
    gate = None
    if args.check:
        gate = Gate(args.check, sample=args.sample, min_overlap=args.min_overlap, force=args.force)
    try:
        manifest = export(
            args.model,
            args.output,
            cache_dir=cache_dir,
            precision=args.quantize or "fp32",
            gate=gate,
            weights=args.weights,
        )
    except ImageSearchError as exc:
        return fail(str(exc))
    check = manifest.check
    if check is not None:
        text = "n/a" if check.text is None else f"{check.text:.2f}"
        verdict = "passed" if check.passed else f"FAILED (< {check.threshold:g}), forced"
        print(f"overlap@10 image={check.image:.2f} text={text} on {check.sample} images: {verdict}")
    print(
        f"exported {manifest.source} ({manifest.precision}, dim {manifest.dim}) to "
        f"{args.output}; serve it with IMAGE_SEARCH_MODEL={args.output}"
    )
    return 0


def run_serve(*, host: str, port: int) -> int:
    """Serve the API; the model and index load before the port opens (as in Lambda's init)."""
    import uvicorn

    from image_search.config import get_settings
    from image_search.serve.api import create_app
    from image_search.serve.service import get_service

    try:
        get_settings()
    except ValidationError as exc:
        return fail(settings_problem(exc, flags=False))
    app = create_app()
    get_service().warm()
    uvicorn.run(app, host=host, port=port, timeout_keep_alive=KEEP_ALIVE_SECONDS)
    return 0
