"""The Ray engine: the same three stages, with the shards run as tasks on a pool of Ray actors.

The plan and the merge run here, in the driver; each actor loads the model once and embeds one
shard per task (with its own download threads), writing the result to S3 like every engine.
An actor that dies mid-shard (a killed worker, a lost node) is restarted by Ray and the task
retried; since a shard's result is written once and last, a retry can only redo or find it.

Ray is optional (requirements-ray.txt): it is imported only when this engine runs.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from image_search.artefacts.location import IndexLocation
from image_search.build.options import BuildOptions
from image_search.build.pipeline import run_stages
from image_search.build.plan_stage import PlannedBuild
from image_search.build.report import BuildReport
from image_search.build.shard_stage import embed_shard
from image_search.build.shards import Shard
from image_search.config import Settings
from image_search.errors import ConfigError
from image_search.model.factory import embedder_for
from image_search.storage import s3

LOG = logging.getLogger(__name__)

# Workers reach the same S3 as the driver. Credentials are passed only to a Ray this process
# starts on this machine; the nodes of a real cluster use their own (an instance role), since a
# job's runtime environment is visible to anyone who can see the cluster's dashboard.
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")
CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_EC2_METADATA_DISABLED",
)
# How often Ray restarts a dead actor and retries the shard it was running.
RETRIES = 3


class ShardWorker:
    """One Ray actor: a model and an S3 client, loaded once, then one shard per call."""

    def __init__(self, settings: Settings) -> None:
        # An actor is a process of its own: it reads its settings here, at its edge.
        client = s3.make_client(max_connections=settings.download_workers + 2)
        self.where = IndexLocation(client, settings.bucket, settings.index_prefix)
        self.options = BuildOptions.of(settings)
        self.embedder = embedder_for(settings).load()

    def embed(self, plan_id: str, shard: Shard) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = embed_shard(
            self.where, self.options, shard, plan_id=plan_id, embedder=self.embedder
        )
        return {
            **outcome.summary(),
            "images": len(shard.objects),
            "seconds": time.perf_counter() - started,
        }

    def ready(self) -> int:
        return os.getpid()


@dataclass(frozen=True)
class RayRun:
    """How the shards went, for the logs and the benchmark."""

    workers: int
    gpus_per_worker: float
    startup_seconds: float  # until every actor had loaded its model
    seconds: float  # from the first task to the last result
    shard_seconds: list[float]  # time inside embed_shard, per shard

    @property
    def overhead_per_shard(self) -> float:
        """Actor time not spent inside embed_shard (scheduling, idle tails), per shard."""
        if not self.shard_seconds:
            return 0.0
        busy = sum(self.shard_seconds)
        return max(0.0, self.workers * self.seconds - busy) / len(self.shard_seconds)


def run_on_ray(
    settings: Settings, *, client: s3.S3Client, full: bool = False, dry_run: bool = False
) -> BuildReport:
    """Plan here, embed the shards on Ray, merge and publish here."""

    def embed_on_cluster(planned: PlannedBuild) -> None:
        if not planned.shards:  # a build that only drops deleted images needs no workers
            return
        started_ray = connect(settings)
        try:
            run = embed_on_ray(settings, planned)
        finally:
            if started_ray:
                _import_ray().shutdown()
        LOG.info(
            "ray: %d worker(s), %.1f s to start, %.1f s for %d shard(s), overhead %.2f s/shard",
            run.workers,
            run.startup_seconds,
            run.seconds,
            len(run.shard_seconds),
            run.overhead_per_shard,
        )

    # The model's identity, read here without loading it (the actors load it).
    model = embedder_for(settings).identity
    return run_stages(
        IndexLocation(client, settings.bucket, settings.index_prefix),
        BuildOptions.of(settings),
        model=model,
        full=full,
        dry_run=dry_run,
        embed=embed_on_cluster,
    )


def connect(settings: Settings, *, num_cpus: int | None = None) -> bool:
    """Join ``settings.ray_address``, or start Ray on this machine; True when this call did.

    A Ray this process already joined (``ray.init`` by the caller) is used as it is.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    import image_search

    names = ENDPOINT_ENV + (CREDENTIAL_ENV if settings.ray_address is None else ())
    runtime_env = {
        "env_vars": {name: os.environ[name] for name in names if name in os.environ},
        # The package travels with the job, so the cluster needs only the dependencies.
        "py_modules": [os.path.dirname(image_search.__file__)],
    }
    options: dict[str, Any] = {"logging_level": logging.WARNING}
    if settings.ray_address is None:
        options |= {"num_cpus": num_cpus, "include_dashboard": False}
    ray.init(address=settings.ray_address, runtime_env=runtime_env, **options)
    return True


def embed_on_ray(settings: Settings, planned: PlannedBuild) -> RayRun:
    """Every shard of ``planned`` embedded (or found done) by a pool of actors."""
    ray = _import_ray()
    from ray.util.actor_pool import ActorPool

    workers, cpus, gpus = _worker_shape(settings, ray.cluster_resources(), len(planned.shards))
    worker_class = ray.remote(ShardWorker).options(
        num_cpus=cpus, num_gpus=gpus, max_restarts=RETRIES, max_task_retries=RETRIES
    )
    started = time.perf_counter()
    actors = [worker_class.remote(settings) for _ in range(workers)]
    try:
        ray.get([actor.ready.remote() for actor in actors])
        ready = time.perf_counter()
        pool = ActorPool(actors)
        plan_id = planned.plan.plan_id
        total = sum(len(shard.objects) for shard in planned.shards)
        shard_seconds: list[float] = []
        with tqdm(total=total, unit="img", desc="embedding on ray", disable=None) as progress:
            for done in pool.map_unordered(
                lambda actor, shard: actor.embed.remote(plan_id, shard), planned.shards
            ):
                shard_seconds.append(done["seconds"])
                progress.update(done["images"])
        return RayRun(
            workers=workers,
            gpus_per_worker=gpus,
            startup_seconds=ready - started,
            seconds=time.perf_counter() - ready,
            shard_seconds=shard_seconds,
        )
    finally:
        for actor in actors:
            ray.kill(actor)


def _worker_shape(
    settings: Settings, resources: dict[str, float], shards: int
) -> tuple[int, float, float]:
    """(actors, CPUs each, GPUs each): one actor per GPU when the cluster has GPUs, else one per
    ``ray_cpus_per_worker`` CPUs, never more actors than shards."""
    gpus = settings.ray_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    cpus = settings.ray_cpus_per_worker
    if settings.ray_workers:
        workers = settings.ray_workers
    elif gpus:
        workers = int(resources.get("GPU", 0) // gpus)
    else:
        workers = int(resources.get("CPU", 0) // cpus)
    if workers < 1:
        raise ConfigError(
            f"the Ray cluster has {resources.get('CPU', 0)} CPU(s) and "
            f"{resources.get('GPU', 0)} GPU(s): not enough for one worker of {cpus} CPU(s) "
            f"and {gpus} GPU(s)"
        )
    return min(workers, shards), cpus, gpus


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the ray engine needs Ray: pip install -r requirements-ray.txt") from exc
    return ray
