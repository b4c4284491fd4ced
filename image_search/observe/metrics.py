"""CloudWatch metrics in the Embedded Metric Format, through Powertools' ``Metrics``.

Every blob carries the ``service`` dimension (image-search-api or image-search-build); the API's
also carry ``kind`` (text, image, similar, or the route's name). The catalogue below is the
contract: docs/observability.md lists it and the tests hold every blob to it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "ImageSearch"

API_METRICS: dict[str, MetricUnit] = {
    "Requests": MetricUnit.Count,
    "ClientErrors": MetricUnit.Count,  # 4xx
    "ServerErrors": MetricUnit.Count,  # 5xx
    "Latency": MetricUnit.Milliseconds,  # the whole request, in the app
    # Searches only (answered 200):
    "Searches": MetricUnit.Count,
    "DecodeLatency": MetricUnit.Milliseconds,
    "EmbedLatency": MetricUnit.Milliseconds,
    "FilterLatency": MetricUnit.Milliseconds,  # a filter's matching rows, when one is given
    "SearchLatency": MetricUnit.Milliseconds,
    "UrlsLatency": MetricUnit.Milliseconds,
    "Results": MetricUnit.Count,
    "EmptyResults": MetricUnit.Count,  # 1 when a search returned nothing
    "TextCacheHits": MetricUnit.Count,  # text searches whose vector came from the cache
    "IndexAge": MetricUnit.Seconds,  # since the served build was made
    "IndexSize": MetricUnit.Count,  # images in the served build
}
BUILD_METRICS: dict[str, MetricUnit] = {
    "BuildsPublished": MetricUnit.Count,
    "BuildFailures": MetricUnit.Count,
    "ImagesAdded": MetricUnit.Count,
    "ImagesUpdated": MetricUnit.Count,
    "ImagesRemoved": MetricUnit.Count,
    "ImagesSkipped": MetricUnit.Count,
    "ImagesEmbedded": MetricUnit.Count,
    "ImagesPerSecond": MetricUnit.CountPerSecond,  # embedded / the run's seconds
    "BuildDuration": MetricUnit.Seconds,
    "IndexSize": MetricUnit.Count,
    "DuplicateGroups": MetricUnit.Count,
}
# Server-Timing stage → metric.
STAGES = {
    "decode": "DecodeLatency",
    "embed": "EmbedLatency",
    "filter": "FilterLatency",
    "search": "SearchLatency",
    "urls": "UrlsLatency",
}


# Inside a Lambda invocation the entry point's ``log_metrics`` prints the blob as it returns
# (raised or not); elsewhere (uvicorn, the CLI) ``emit`` prints it at once.
_AT_RETURN: ContextVar[bool] = ContextVar("image_search_metrics_at_return", default=False)
# Metrics are recorded only where CloudWatch reads them (JSON logs), so an invocation with text
# logs, or one that recorded nothing, has nothing to print: not worth a warning on stderr.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)


@lru_cache(maxsize=2)
def for_service(default: str) -> Metrics:
    """The Powertools ``Metrics`` of a service (POWERTOOLS_SERVICE_NAME, else ``default``)."""
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)
    return Metrics(namespace=namespace, service=os.environ.get("POWERTOOLS_SERVICE_NAME", default))


@contextmanager
def printed_at_return() -> Iterator[None]:
    """Within it, ``emit`` leaves printing to the decorated entry point that is running."""
    token = _AT_RETURN.set(True)
    try:
        yield
    finally:
        _AT_RETURN.reset(token)


def emit(
    service: str,
    catalogue: dict[str, MetricUnit],
    values: dict[str, float],
    *,
    dimensions: dict[str, str] | None = None,
) -> None:
    """One EMF blob with ``values`` (names from ``catalogue``) under ``dimensions``."""
    metrics = for_service(service)
    for dimension, label in (dimensions or {}).items():
        metrics.add_dimension(name=dimension, value=label)
    for name, value in values.items():
        metrics.add_metric(name=name, unit=catalogue[name], value=value)
    if not _AT_RETURN.get():
        metrics.flush_metrics()
